"""The nodal solver against three independent truths: the notebook's closed forms, finite
differences for its gradients, and ngspice running every preset file unchanged."""

from __future__ import annotations

import math
import shutil
import subprocess

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from hostctl.circuits import CIRCUITS, NOTEBOOK_VALUES, PRESETS_DIR, get_circuit  # noqa: E402
from hostctl.circuits.closed_forms import CLOSED_FORMS  # noqa: E402

NGSPICE = shutil.which("ngspice")
F = np.logspace(0, 5, 200)          # 1 Hz .. 100 kHz
OMEGA = torch.from_numpy(2 * math.pi * F)


def _random_values(circ, rng, n):
    """(n, 1) tensors: resistors 0.2x..5x the notebook's, capacitors 10 nF..10 uF."""
    R = {r: torch.from_numpy(NOTEBOOK_VALUES[r] * np.exp(rng.uniform(-1.6, 1.6, (n, 1))))
         for r in circ.resistors}
    C = {r: torch.from_numpy(10 ** rng.uniform(-8, -5, (n, 1))) for r in circ.resistors}
    return R, C


@pytest.mark.parametrize("name", sorted(CLOSED_FORMS))
def test_ideal_presets_match_the_closed_forms(name):
    circ = get_circuit(name)
    R, C = _random_values(circ, np.random.default_rng(1), 50)
    got = circ.model(OMEGA, R, C)
    want = CLOSED_FORMS[name](OMEGA, R, C)
    assert set(got) == set(want) == set(circ.channels)
    for ch in want:
        assert got[ch].shape == (50, len(F))
        rel = ((got[ch] - want[ch]) / want[ch]).abs().max().item()
        assert rel <= 1e-10, (ch, rel)


@pytest.mark.parametrize("name", ["color-organ", "color-organ-passive", "bandpass-ideal"])
def test_gradients_match_finite_differences(name):
    """d log|H| / d log p for every fitted resistor, capacitor and a fixed parameter."""
    circ = get_circuit(name)
    om = OMEGA[::20]
    base = {k: float(v) for k, v in circ.params.items()
            if k in circ.resistors or k.startswith("C_") or k == "R_source"}
    names = sorted(base)

    def f(vals):
        R = {k: vals[k] for k in names if not (k.startswith("C_") and "R" + k[1:] in base)}
        C = {"R" + k[1:]: vals[k] for k in names if k.startswith("C_") and "R" + k[1:] in base}
        out = circ.model(om, R, C)
        return torch.cat([out[c].log() for c in circ.channels])

    leaves = {k: torch.tensor(base[k], dtype=torch.float64, requires_grad=True) for k in names}
    y = f(leaves)
    J = torch.stack([torch.stack(torch.autograd.grad(
        y[i], [leaves[k] for k in names], retain_graph=True, allow_unused=True,
        materialize_grads=True)) for i in range(len(y))])
    def t(v):
        return torch.tensor(v, dtype=torch.float64)

    for j, k in enumerate(names):
        h = 1e-4  # ESR-sized resistors cost the solve a few digits: a wider step
        up = f({**{n: t(base[n]) for n in names}, k: t(base[k] * (1 + h))})
        dn = f({**{n: t(base[n]) for n in names}, k: t(base[k] * (1 - h))})
        fd = (up - dn) / (2 * h)                     # d/d log p
        ad = J[:, j] * base[k]
        # central differences in log p: truncation ~h^2, rounding ~1e-13/h in log|H| ~ 1
        assert (fd - ad).abs().max().item() <= 1e-6 * fd.abs().max().item() + 1e-8, k


def test_source_resistance_cancels_in_gain_but_not_in_node_voltage():
    circ = get_circuit("color-organ")
    om = torch.from_numpy(2 * math.pi * np.logspace(np.log10(20), np.log10(2e4), 80))
    g = {rs: circ.model(om, {"R_source": torch.tensor(rs, dtype=torch.float64)}, {})
         for rs in (0.1, 75.0)}
    for ch in circ.channels:
        assert (g[0.1][ch] - g[75.0][ch]).abs().max().item() <= 1e-12
    v = {rs: circ.node_voltages(om, {"R_source": rs}, nodes=["low"])["low"].abs()
         for rs in (0.1, 75.0)}
    change = ((v[75.0] - v[0.1]) / v[0.1]).abs().max().item()
    assert change > 0.05          # the LED sees the divider the source resistance makes


def test_batch_shapes_broadcast_boards_against_tones():
    circ = get_circuit("color-organ-passive")
    B = 5
    R = {"R_low": torch.linspace(150, 250, B, dtype=torch.float64).reshape(B, 1)}
    out = circ.model(OMEGA, R, {})
    assert out["low"].shape == (B, len(F)) and out["band"].shape == (B, len(F))
    one = circ.model(OMEGA, {"R_low": torch.tensor(200.0, dtype=torch.float64)}, {})
    assert torch.allclose(out["band"][2], one["band"], rtol=1e-13, atol=0)


def _ngspice(preset, nodes, tmp_path):
    out = tmp_path / f"{preset.stem}.txt"
    vecs = " ".join(f"vr({n}) vi({n})" for n in nodes)
    top = tmp_path / f"run-{preset.stem}.cir"
    top.write_text(f"* hostctl test of {preset.name}\n.include {preset}\n.control\n"
                   "set wr_singlescale\nset wr_vecnames\noption numdgt=15\n"
                   f"ac dec 20 20 20k\nwrdata {out} {vecs}\n.endc\n.end\n")
    r = subprocess.run([NGSPICE, "-b", str(top)], capture_output=True, text=True, timeout=60)
    # ngspice -b exits 1 ("no simulations run") when only a .control block ran: judge by
    # its messages and its output instead
    log = r.stdout + r.stderr
    assert out.exists() and "error" not in log.lower() and "warning" not in log.lower(), log
    d = np.loadtxt(out, skiprows=1)
    return d[:, 0], {n: d[:, 1 + 2 * i] + 1j * d[:, 2 + 2 * i] for i, n in enumerate(nodes)}


@pytest.mark.skipif(NGSPICE is None, reason="ngspice not installed: no independent truth")
@pytest.mark.parametrize("name", list(CIRCUITS))
def test_every_preset_runs_unchanged_in_ngspice_and_agrees(name, tmp_path):
    circ = get_circuit(name)
    preset = PRESETS_DIR / f"{name}.cir"
    nodes = sorted(set(circ.probe.values()) | set(circ.leds.values()))
    f, spice = _ngspice(preset, nodes, tmp_path)
    assert f[0] == pytest.approx(20) and f[-1] == pytest.approx(2e4) and len(f) >= 60
    om = torch.from_numpy(2 * math.pi * f)
    mine = circ.node_voltages(om, nodes=nodes)
    for n in nodes:
        rel = np.abs(mine[n].numpy() - spice[n]) / np.abs(spice[n])
        assert rel.max() <= 1e-6, (n, rel.max())
    gains = circ.model(om, {}, {})
    ref = spice[circ.probe["ref"]]
    for ch in circ.channels:
        want = np.abs(spice[circ.probe[ch]] / ref)
        rel = np.abs(gains[ch].numpy() - want) / want
        assert rel.max() <= 1e-6, (ch, rel.max())
