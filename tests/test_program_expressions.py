"""Element values that are expressions of the fitted parameters (``{R_low/S_low}``,
``.param R2={2*R1}``, powers) compiled into the numpy program with their chain rule:
the values against ngspice, the log-derivatives against torch autograd through the solver."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hostctl.circuits import capacitances, get_circuit, parse_text
from hostctl.circuits.expr import exponents
from hostctl.circuits.registry import from_netlist

NET = """* expressions of the fitted parameters
*@ channels ref=in out=out mid=mid
*@ fit R1 R0
.param R1=1k R0=470 R2={2*R1} C1=1u K=3 G={K/2}
V1 in 0 AC {G*0.5}
R1 in mid {R2}
C1 mid 0 {C1*(R0/R1)**0.5}
R2 mid out {R1**2/R0}
C2 out 0 {C1/2}
E1 buf 0 out 0 {G}
R3 buf 0 {R0*3.5}
.end
"""


@pytest.mark.parametrize("expr,want", [
    ("r_low / s_low", {"r_low": 1.0, "s_low": -1.0}),
    ("c_low * s_low", {"s_low": 1.0}),
    ("r1 ** 2 / r0", {"r1": 2.0, "r0": -1.0}),
    ("c1 * ( r0 / r1 ) ** 0.5", {"r0": 0.5, "r1": -0.5}),
    ("- 2.0 * r2", {"r1": 1.0}),          # through .param r2 = 2 * r1
    ("r1 / r1", {}),
    ("r1 + 1.0", None), ("c1 ** r1", None), ("r1 + r0", None),
])
def test_exponents_of_a_monomial(expr, want):
    assert exponents(expr, frozenset({"r1", "r0", "r_low", "s_low"}),
                     {"r2": "2.0 * r1"}) == want


def _model(circ, free):
    from hostctl.fit.model import _Model

    return _Model(circ, capacitances(circ, 1e-6), free, {})


def _both(m, th, om, ch):
    """(program, autograd) log|H| and Jacobian of the same model."""
    L, J = m.logh(th, om, ch)
    fast, m._fast = m._fast, None
    try:
        L0, J0 = m.logh(th, om, ch)
    finally:
        m._fast = fast
    return L, J, L0, J0


def test_passive_preset_takes_the_program_and_agrees_with_autograd():
    """Every preset's element values are monomials in its resistors and nuisances: the
    passive color organ (R_x/S_x, C_x*S_x) takes the numpy program, which agrees with
    autograd through the torch solver to 1e-10 in log|H| and its Jacobian."""
    pytest.importorskip("torch")
    import torch

    circ = get_circuit("color-organ-passive")
    free = list(circ.resistors) + list(circ.nuisance)
    m = _model(circ, free)
    assert m._fast is not None
    n = 3 * 30
    om = torch.from_numpy(2 * math.pi * np.repeat(np.geomspace(20, 2e4, n // 3), 3))
    ch = torch.from_numpy(np.tile(np.arange(3), n // 3))
    th = (np.log([[float(circ.params[k]) for k in free]] * 3)
          + np.random.default_rng(5).normal(0, 0.1, (3, len(free))))
    L, J, L0, J0 = _both(m, th, om, ch)
    assert J.shape == (3, n, len(free))
    assert np.abs(L - L0).max() <= 1e-10
    assert np.abs(J - J0).max() <= 1e-10 * max(1.0, np.abs(J0).max())
    s = free.index("S_band_low")
    assert np.abs(J[..., s]).max() > 1e-3     # the nuisance really moves the band channel


def test_expression_values_match_ngspice_and_autograd():
    """A netlist whose values are products, quotients, powers and .param chains of the
    fitted R1, R0: node voltages against ngspice (1e-6), log-derivatives against autograd
    (1e-10); a sum of fitted parameters still falls back to autograd."""
    pytest.importorskip("torch")
    import torch

    from sims import spice

    circ = from_netlist(parse_text(NET, "expr.cir"), "t-expr")
    solver = circ.solver
    f = np.geomspace(20, 2e4, 25)
    vals = {"R1": 1300.0, "R0": 390.0}
    got = solver.solve_numpy(2 * math.pi * f, vals, ["out", "mid", "buf"])
    if spice.ngspice_path() is None:
        pytest.skip(spice.MISSING_MESSAGE)
    want = spice.direct(NET, f, vals, ("out", "mid", "buf"))
    assert np.abs(got - want).max() <= 1e-6 * np.abs(want).max()

    m = _model(circ, ["R1", "R0"])
    assert m._fast is not None
    om = torch.from_numpy(2 * math.pi * np.repeat(f, 2))
    ch = torch.from_numpy(np.tile(np.arange(2), len(f)))
    th = np.log([[1300.0, 390.0], [800.0, 620.0]])
    L, J, L0, J0 = _both(m, th, om, ch)
    assert np.abs(L - L0).max() <= 1e-10
    assert np.abs(J - J0).max() <= 1e-10 * max(1.0, np.abs(J0).max())
    assert np.abs(J).max() > 0.1

    summed = from_netlist(parse_text(NET.replace("{R1**2/R0}", "{R1+R0}"), "s.cir"), "t-sum")
    assert _model(summed, ["R1", "R0"])._fast is None
    assert summed.solver.sensitivities(om.numpy(), vals, ["out"], ["R1", "R0"]) is None
