"""fit_many's batched gain path (a circuit without nuisances) against single-board fits:
the same values, intervals, warnings and verdicts, for plain boards and for the boards
whose case sends them to the single-board functions (a channel too short for the linear
start, a section whose corner no tone sees, exact data)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hostctl.circuits import get_circuit
from hostctl.dataset import Measurement, MeasurementSet
from hostctl.fit import fit, fit_many

TRUE = {"R_low": 200.0, "R_band_low": 39.0, "R_band_high": 160.0, "R_high": 33.0}


def _board(rng, f, noise):
    circ = get_circuit("color-organ-ideal")
    tv = {k: v * (1 + 0.05 * rng.uniform(-1, 1)) for k, v in TRUE.items()}
    H = circ.magnitude(f, tv)
    return MeasurementSet([Measurement(float(fk), c, gain=float(H[c][i] * math.exp(
        noise * rng.normal()))) for c in circ.channels for i, fk in enumerate(f)])


def test_batched_boards_match_single_fits():
    circ = get_circuit("color-organ-ideal")
    rng = np.random.default_rng(5)
    f = np.geomspace(20, 20000, 30)
    boards = [_board(rng, f, 0.01) for _ in range(12)]
    boards.append(_board(rng, np.geomspace(20, 300, 12), 0.01))   # corners above unseen
    boards.append(_board(rng, f, 0.0))                            # exact
    short = _board(rng, f, 0.01)
    boards.append(MeasurementSet([m for m in short.rows if m.channel != "high"
                                  or m.frequency_hz in f[::15]]))  # 2 rows on "high"
    many = fit_many(boards, circ)
    assert all(r.method == "gauss-newton" for r in many)
    assert any(w.startswith("R_band_low: the data do not determine it")
               for w in many[12].warnings)
    for b, m in zip(boards, many, strict=True):
        one = fit(b, circ)
        assert one.warnings == m.warnings and one.trusted == m.trusted
        for k in TRUE:
            assert m.values[k] == pytest.approx(one.values[k], rel=1e-9)
            for a, c in zip(m.ci95[k], one.ci95[k], strict=True):
                assert a == pytest.approx(c, rel=1e-6) or (math.isinf(a) and a == c)


def test_blocks_of_boards_give_the_batch_answers(monkeypatch):
    """Many boards go in blocks (memory stays one block's): each board's LM is its own,
    so blocks of 4 give exactly what one batch gives."""
    import hostctl.fit.batch as batch

    circ = get_circuit("color-organ-ideal")
    rng = np.random.default_rng(8)
    boards = [_board(rng, np.geomspace(20, 20000, 20), 0.01) for _ in range(10)]
    whole = fit_many(boards, circ)
    monkeypatch.setattr(batch, "BOARDS_PER_BLOCK", 4)
    blocks = fit_many(boards, circ)
    assert len(blocks) == 10
    for a, b in zip(whole, blocks, strict=True):
        assert a.values == b.values and a.ci95 == b.ci95 and a.warnings == b.warnings


def test_the_map_stops_when_a_step_is_far_inside_the_noise(monkeypatch):
    """A weakly determined nuisance (the buffered preset's ESR) made the MAP crawl on at
    rounding size (26 steps on one data set, 4 more here); it now stops once a step
    promises less than 1e-10 of a chi-square, within 1e-3 sigma of the crawl's end."""
    import hostctl.fit.engine as engine

    circ = get_circuit("color-organ")
    f = np.geomspace(20, 20000, 100)
    H = circ.magnitude(f, {**TRUE, **{k: n.nominal for k, n in circ.nuisance.items()}})
    rng = np.random.default_rng(0)
    ms = MeasurementSet([Measurement(float(fk), c, gain=float(H[c][i] * math.exp(
        0.01 * rng.normal()))) for i, fk in enumerate(f) for c in circ.channels])
    quick = fit(ms, circ)
    monkeypatch.setattr(engine, "MAP_GAIN_ABS", 0.0)
    slow = fit(ms, circ)
    assert quick.iterations < slow.iterations
    for k in TRUE:
        sd = (slow.ci95[k][1] - slow.ci95[k][0]) / 2 / 1.96
        assert abs(quick.values[k] - slow.values[k]) < 1e-3 * sd
