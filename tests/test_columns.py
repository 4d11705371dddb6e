"""Measurements as columns (MeasurementSet.from_columns, a CSV read compactly): the same
rows when iterated, the same arrays for the fit and the same fitted values and intervals
as the same measurements held as Measurement objects."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_compact_read import measurement_lists, num, read_watching_blocks

from hostctl.dataset import COLUMNS, Measurement, MeasurementSet
from hostctl.errors import InputError
from hostctl.fit.rows import _raw

rows = measurement_lists(["", "clipped", "not-played|below-floor", "below-floor"],
                         vin_v=num, gain_se=num)


def as_columns(ms: list[Measurement]) -> MeasurementSet:
    """The same rows given column by column (None where a row has no value)."""
    cols = {c: [getattr(m, c) for m in ms] for c in COLUMNS}
    f, ch = cols.pop("frequency_hz"), cols.pop("channel")
    return MeasurementSet.from_columns(np.array(f), ch, {"k": "v"}, **cols)


@settings(max_examples=60, deadline=None)
@given(rows)
def test_columns_iterate_as_the_rows_and_give_the_fit_the_same_arrays(
        ms: list[Measurement]) -> None:
    cols = as_columns(ms)
    assert list(cols) == ms and cols.meta == {"k": "v"}
    a, b = _raw(MeasurementSet(ms)), _raw(cols)
    for k in ("F", "G", "LV", "Y", "se", "vin", "gflag", "lflag"):
        x, y = (None if v is None else np.asarray(v, dtype=float) for v in (a[k], b[k]))
        assert (x is None) == (y is None), k
        if x is not None:
            np.testing.assert_array_equal(x, y, err_msg=k)
    # channel indices may number the names differently: the names per row must agree
    assert [a["names"][i] for i in a["chn"]] == [b["names"][i] for i in b["chn"]]
    # what a caller asks of the whole set: the same from the columns as from the rows
    objs = MeasurementSet(ms)
    assert cols.channels == objs.channels == sorted({m.channel for m in ms})
    for name in ("frequency_hz", "gain", "led", "vin_v", "vout_v", "level_dbfs", "gain_se"):
        np.testing.assert_array_equal(np.asarray(cols.column(name), dtype=float),
                                      np.asarray(objs.column(name), dtype=float), name)
    assert (objs.column("led") >= 0).sum() == sum(m.led is not None for m in ms)


def test_columns_of_unequal_length_or_unknown_name_are_input_errors() -> None:
    with pytest.raises(InputError, match="column gain"):
        MeasurementSet.from_columns([10.0, 20.0], ["low", "low"], gain=[1.0])
    with pytest.raises(InputError, match="unknown column"):
        MeasurementSet.from_columns([10.0], ["low"], gian=[1.0])


def bench_rows() -> list[Measurement]:
    """Gains on two channels with noise and a flagged row, LED states on the third."""
    from hostctl.circuits import NOTEBOOK_VALUES, get_circuit

    circ = get_circuit("color-organ-ideal")
    f = np.geomspace(30, 15000, 25)
    H = circ.magnitude(f, dict(NOTEBOOK_VALUES))
    rng = np.random.default_rng(3)
    out = [Measurement(float(fk), ch, gain=float(H[ch][k] * math.exp(0.01 * rng.normal())),
                       level_dbfs=-12.0)
           for k, fk in enumerate(f) for ch in ("low", "band")]
    out[7] = Measurement(out[7].frequency_hz, out[7].channel, gain=5.0, flag="clipped")
    out += [Measurement(float(fk), "high", led=int(H["high"][k] > 0.5), level_dbfs=-12.0)
            for k, fk in enumerate(f)]
    return out


@pytest.mark.parametrize("how", ["from_columns", "read_csv"])
def test_a_fit_from_columns_equals_the_fit_from_rows(how: str, tmp_path) -> None:
    """Also the flagged row beside LED-only rows: a CSV read into columns once counted an
    unflagged row's empty gain cell as a gain ("gain nan is not finite")."""
    from hostctl.fit import fit

    ms = bench_rows()
    a = fit(MeasurementSet(ms), "color-organ-ideal")
    if how == "read_csv":
        MeasurementSet(ms).write_csv(tmp_path / "d.csv")
        cols = MeasurementSet.read_csv(tmp_path / "d.csv")
    else:
        cols = as_columns(ms)
    b = fit(cols, "color-organ-ideal")
    assert a.n_gain == b.n_gain == 49 and a.n_led == b.n_led == 25
    assert a.ci_method == b.ci_method and "data-consistent" in a.ci_method.values()
    for k, v in a.values.items():
        assert b.values[k] == pytest.approx(v, rel=1e-12)
        assert b.ci95[k] == pytest.approx(a.ci95[k], rel=1e-12)
    assert a.warnings == b.warnings


def test_a_session_is_read_into_columns_and_appends_as_a_list(tmp_path) -> None:
    from hostctl.rowstore import RowStore
    from hostctl.sessionlog import Recorder, read_session

    ms = bench_rows()
    with Recorder(tmp_path / "session.csv", {"circuit": "color-organ-ideal"}) as rec:
        rec.append(ms)
    got = read_session(tmp_path / "session.csv")
    assert isinstance(got.rows, RowStore) and list(got) == ms
    assert got.meta["circuit"] == "color-organ-ideal"
    got.append(ms[0])          # a resumed run goes on appending
    assert len(got) == len(ms) + 1 and got.rows[-1] == ms[0]


pos = st.one_of(st.none(), st.floats(min_value=1e-3, max_value=1e3))
sparse_rows = st.lists(st.builds(
    Measurement, frequency_hz=st.floats(min_value=0.1, max_value=1e6),
    channel=st.sampled_from(["low", "band", "high"]), gain=pos,
    led=st.one_of(st.none(), st.sampled_from([0, 1])), vin_v=pos, vout_v=pos,
    level_dbfs=st.one_of(st.none(), st.floats(min_value=-60, max_value=0)),
    flag=st.sampled_from(["", "clipped"]), gain_se=pos), min_size=1, max_size=40)


@settings(max_examples=60, deadline=None)
@given(sparse_rows)
def test_a_block_with_empty_cells_is_read_at_once_to_the_same_rows(
        tmp_path_factory, ms: list[Measurement]) -> None:
    """Empty cells (a session's gain-only or LED-only rows) keep the block reader, and an
    empty gain with both amplitudes is Vout / Vin, as the row-by-row reader has it."""

    p = tmp_path_factory.mktemp("e") / "d.csv"
    text = MeasurementSet(ms).to_csv()
    p.write_text(text)
    compact, taken = read_watching_blocks(p)
    assert taken == [True]
    assert list(compact.rows) == MeasurementSet.parse_csv(text).rows
    derived = [m for m in compact.rows if m.gain is not None]
    assert len(derived) == sum(m.gain is not None or (m.vin_v is not None
                                                     and m.vout_v is not None) for m in ms)


def test_a_row_without_frequency_or_with_a_blank_cell_takes_the_careful_reader(
        tmp_path) -> None:
    p = tmp_path / "d.csv"
    p.write_text("frequency_hz,channel,gain\n100,low,0.5\n,low,0.5\n")
    with pytest.raises(InputError, match="frequency is empty"):
        MeasurementSet.read_csv(p)
    p.write_text("frequency_hz,channel,gain\n100,low,0.5\n200,low,  \n300,low,\n")
    assert [m.gain for m in MeasurementSet.read_csv(p).rows] == [0.5, None, None]


def test_fit_many_from_columns_equals_fit_many_from_rows() -> None:
    """Boards held as columns are sorted into gain / LED boards without a row object, and
    fitted to the same values and intervals."""
    from hostctl.circuits import NOTEBOOK_VALUES, get_circuit
    from hostctl.fit import fit_many
    from hostctl.fit.rows import row_kinds

    circ = get_circuit("color-organ-ideal")
    f = np.geomspace(20, 20000, 30)
    rng = np.random.default_rng(11)
    boards = []
    for _ in range(12):
        vals = {k: v * (1 + 0.05 * rng.uniform(-1, 1)) for k, v in NOTEBOOK_VALUES.items()}
        H = circ.magnitude(f, vals)
        boards.append([Measurement(float(fk), ch, gain=float(H[ch][k] * math.exp(
            0.01 * rng.normal()))) for k, fk in enumerate(f) for ch in circ.channels])
    leds = bench_rows()[-25:]
    boards.append(leds)
    a = fit_many([MeasurementSet(b) for b in boards], circ)
    cols = [as_columns(b) for b in boards]
    assert [row_kinds(c) for c in cols] == [(True, False)] * 12 + [(False, True)]
    flagged = as_columns(bench_rows())
    assert row_kinds(flagged) == row_kinds(MeasurementSet(bench_rows())) == (True, True)
    b = fit_many(cols, circ)
    for x, y in zip(a, b, strict=True):
        assert x.ci_method == y.ci_method
        for k, v in x.values.items():
            assert y.values[k] == pytest.approx(v, rel=1e-12)
            assert y.ci95[k] == pytest.approx(x.ci95[k], rel=1e-12)
