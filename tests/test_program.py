"""The netlist compiled to straight-line numpy code (hostctl.circuits.program) against a
pivoting dense solve, and its adjoint Jacobian against torch autograd through the solver."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hostctl.circuits import CIRCUITS, capacitances, get_circuit, parse_text
from hostctl.circuits.registry import from_netlist

NETLISTS = sorted(n for n, c in CIRCUITS.items() if c.solver is not None)
OMEGA = 2 * math.pi * np.geomspace(1.0, 1e5, 60)


def _values(circ, rng, n=3):
    names = list(circ.resistors) + list(circ.nuisance) + ["R_source", "C_couple"]
    return {k: float(circ.params[k]) * np.exp(rng.normal(0, 0.5, (n, 1)))
            for k in names if k in circ.params}


@pytest.mark.parametrize("name", NETLISTS)
def test_program_matches_a_dense_solve(name):
    m = get_circuit(name).solver
    vals = _values(get_circuit(name), np.random.default_rng(1))
    got = m.solve_numpy(OMEGA, vals)
    _, v, batch = m._numpy_values(OMEGA, vals)
    want = m._dense_numpy(v, batch)[..., :len(m.nodes)]
    assert m._program(tuple(range(len(m.nodes)))) is not None   # the program ran
    assert got.shape == want.shape == (3, len(OMEGA), len(m.nodes))
    rel = np.abs(got - want) / np.maximum(np.abs(want), 1e-300)
    assert rel.max() <= 1e-9, rel.max()


@pytest.mark.parametrize("name", ["color-organ", "bandpass", "highpass-ideal"])
def test_adjoint_jacobian_matches_autograd(name):
    """log|H| and d log|H| / d log p of the fit's model, numpy program vs torch autograd
    through the differentiable solver, resistors and nuisances alike."""
    pytest.importorskip("torch")
    import torch

    from hostctl.fit.model import _Model

    circ = get_circuit(name)
    free = list(circ.resistors) + list(circ.nuisance)
    m = _Model(circ, capacitances(circ, 1e-6), free, {})
    assert m._fast is not None
    n = 3 * 25
    om = torch.from_numpy(2 * math.pi * np.repeat(np.geomspace(20, 2e4, n // 3), 3))
    ch = torch.from_numpy(np.tile(np.arange(3), n // 3) % len(circ.channels))
    th = (np.log([[float(circ.params[k]) for k in free]] * 4)
          + np.random.default_rng(2).normal(0, 0.2, (4, len(free))))
    L, J = m.logh(th, om, ch)
    fast, m._fast = m._fast, None
    try:
        L0, J0 = m.logh(th, om, ch)
    finally:
        m._fast = fast
    assert L.shape == L0.shape == (4, n) and J.shape == J0.shape == (4, n, len(free))
    assert np.abs(L - L0).max() <= 1e-10
    assert np.abs(J - J0).max() <= 1e-9 * max(1.0, np.abs(J0).max())
    L1, none = m.logh(th, om, ch, jac=False)
    assert none is None and np.abs(L1 - L).max() == 0.0


def test_a_failed_program_falls_back_to_the_dense_solve():
    """Where the static pivots meet a zero the program's results are not finite: the
    pivoting dense solve answers instead, and names a singular circuit."""
    from hostctl.errors import InputError

    net = parse_text("""* test
*@ channels ref=in out=out
*@ fit R1
.param R1=1k C1=1u C2=1u
V1 in 0 AC 1
R1 in out {R1}
C1 out 0 {C1}
C2 out mid {C2}
C3 mid 0 {C2}
.end
""", "t.cir")
    m = from_netlist(net, "t-fallback").solver
    om = np.array([1e2, 1e3])
    want = m.solve_numpy(om, {"R1": 2e3}, ["out", "mid"])
    key = (tuple(m._col(n) for n in ("out", "mid")), (), ())
    calls = []

    def broken(v, w):
        calls.append(1)
        return [np.full(2, np.nan), np.full(2, np.nan)]

    m._programs[key] = broken
    got = m.solve_numpy(om, {"R1": 2e3}, ["out", "mid"])
    assert calls and np.abs(got - want).max() <= 1e-12 * np.abs(want).max()
    z = 1j * om * 1e-6
    out = 1 / (1 + 2e3 * (z + z / 2))   # C1 || (C2 in series with C3)
    assert got[:, 0] == pytest.approx(out, rel=1e-12)
    with pytest.raises(InputError, match="singular"):   # mid only reaches caps at 0 Hz
        m.solve_numpy(np.array([0.0]), {}, ["mid"])


def test_big_batches_go_in_pieces_with_the_same_answer(monkeypatch):
    """Many rows or boards are solved in pieces of the longest axis (memory stays flat);
    the pieces give exactly the whole."""
    import hostctl.circuits.mna as mna

    m = get_circuit("color-organ").solver
    nodes = ["a0", "a1", "a2", "a3"]
    om = np.broadcast_to(2 * math.pi * np.geomspace(20, 2e4, 40), (300, 40))
    vals = {"R_low": 200 * np.exp(np.random.default_rng(0).normal(0, 0.1, (300, 1)))}
    V, dV = m.sensitivities(om, vals, nodes, ["R_low", "ESR_low"])
    X = m.solve_numpy(om, vals, nodes)
    monkeypatch.setattr(mna, "CHUNK", 1000)
    V2, dV2 = m.sensitivities(om, vals, nodes, ["R_low", "ESR_low"])
    assert V.shape == (300, 40, 4) and dV.shape == (300, 40, 4, 2)
    assert np.array_equal(V, V2) and np.array_equal(dV, dV2)
    assert np.array_equal(X, m.solve_numpy(om, vals, nodes)) and np.array_equal(X, V)


def test_the_autograd_path_is_the_derivative_of_its_log_gain():
    """The model's torch path (any netlist whose values are no monomials in the free
    parameters takes it; forced here on the passive preset, whose {R_low/S_low} and
    {C_low*S_low} the program now takes too): its Jacobian is the derivative of its own
    log|H| (central differences)."""
    pytest.importorskip("torch")
    import torch

    from hostctl.fit.model import _Model

    circ = get_circuit("color-organ-passive")
    free = list(circ.resistors) + list(circ.nuisance)
    m = _Model(circ, capacitances(circ, 1e-6), free, {})
    m._fast = None
    om = torch.from_numpy(2 * math.pi * np.repeat(np.geomspace(20, 2e4, 12), 3))
    ch = torch.from_numpy(np.tile(np.arange(3), 12))
    th = np.log([[float(circ.params[k]) for k in free]])
    L, J = m.logh(th, om, ch)
    h = 1e-6
    for j in range(len(free)):
        up, dn = th.copy(), th.copy()
        up[0, j] += h
        dn[0, j] -= h
        fd = (m.logh(up, om, ch, jac=False)[0] - m.logh(dn, om, ch, jac=False)[0]) / (2 * h)
        np.testing.assert_allclose(np.asarray(J)[0, :, j], np.asarray(fd)[0], rtol=1e-5,
                                   atol=1e-6)   # differences of rounding-level logs


@pytest.mark.parametrize("name", ["color-organ-passive", "lowpass"])
def test_log_gains_are_the_real_log_derivatives_of_the_sensitivities(name):
    """The fit's log-gain Jacobian straight from the program (seeds scaled by 1/V inside)
    equals Re(dV/V) of the complex sensitivities, referred to the A0 node; where the
    program's numbers are not finite, the same from the dense solves."""
    circ = get_circuit(name)
    m = circ.solver
    free = list(circ.resistors) + list(circ.nuisance)
    ref = circ.probe.get("ref")
    nodes = ([ref] if ref else []) + [circ.probe[c] for c in circ.channels]
    vals = {k: v for k, v in _values(circ, np.random.default_rng(4), 2).items() if k in free}
    prep = m.bind({}, free)(OMEGA[None, :], vals)
    V, J = m.log_gains(nodes, free, prep, bool(ref))
    V0, dV = m.sensitivities(None, None, nodes, free, prep)
    D = (dV / V0[..., None]).real
    want = D[..., 1:, :] - D[..., :1, :] if ref else D
    assert J.shape == want.shape == (2, len(OMEGA), len(circ.channels), len(free))
    assert np.array_equal(V, V0)
    assert np.abs(J - want).max() <= 1e-10 * np.abs(want).max()
    assert np.abs(want).max() > 0.5
    lp = m._log_plan(tuple(nodes), tuple(free), bool(ref))
    m._programs[("log", tuple(nodes), tuple(free), bool(ref))] = (
        lp[0], lp[1], lambda v, w: [np.nan] * 99)
    try:
        V2, J2 = m.log_gains(nodes, free, prep, bool(ref))
    finally:
        m._programs[("log", tuple(nodes), tuple(free), bool(ref))] = lp
    assert np.abs(V2 - V).max() <= 1e-12 * np.abs(V).max()
    assert np.abs(J2 - J).max() <= 1e-9 * np.abs(J).max()


def test_the_model_recalls_a_point_only_when_it_is_the_same():
    """The fit asks again at the same parameters and tones (a pilot's end is the MAP's
    start): the model answers from memory then, with copies, and computes anew for any
    other parameters or tones."""
    pytest.importorskip("torch")
    import torch

    from hostctl.fit.model import _Model

    circ = get_circuit("color-organ")
    free = list(circ.resistors)
    m = _Model(circ, capacitances(circ, 1e-6), free, {})
    calls = []
    inner = m._logh_any
    m._logh_any = lambda *a: calls.append(1) or inner(*a)
    om = torch.from_numpy(2 * math.pi * np.geomspace(20, 2e4, 30))
    ch = torch.from_numpy(np.arange(30) % 3)
    th = np.log([[float(circ.params[k]) for k in free]])
    L, J = m.logh(th, om, ch)
    L[:] = 0.0
    J[:] = 0.0          # what a caller does with its arrays does not reach the memory
    L1, J1 = m.logh(th.copy(), om.clone(), ch.clone())
    L2, none = m.logh(th, om, ch, jac=False)
    assert len(calls) == 1 and none is None
    assert np.abs(L1).min() > 0 and np.abs(J1).max() > 0.1 and np.array_equal(L1, L2)
    L3, _ = m.logh(th + 1e-3, om, ch)
    L4, _ = m.logh(th, om * 1.01, ch)
    assert len(calls) == 3
    assert np.abs(L3 - L1).max() > 1e-4 and np.abs(L4 - L1).max() > 1e-4
