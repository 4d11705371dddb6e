"""The few special functions the fit needs, without importing scipy.

Why: ``scipy.special`` costs ~0.5 s of import and ``scipy.optimize`` another ~0.3 s, more
than the whole work of ``hostctl fit --json`` on a small file (issue 18). The fit uses
four numbers from them: ``log Phi(z)`` (the probit likelihood), a Student-t quantile (gain
intervals from few residuals), a chi-square upper quantile (goodness of fit) and the
normal quantile. These are computed here to rounding: ``log_ndtr`` by torch's own kernel
(torch is loaded wherever a fit runs), the quantiles by inverting the regularised
incomplete beta / gamma functions (continued fractions, Numerical Recipes 6.2/6.4) with
bisection. tests/test_special.py holds them against scipy.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

_EPS = 1e-16
_TINY = 1e-300


def log_ndtr(z: np.ndarray) -> np.ndarray:
    """``log Phi(z)`` elementwise, float64, accurate in both tails (torch.special)."""
    import torch

    return torch.special.log_ndtr(torch.from_numpy(np.ascontiguousarray(z, dtype=float))
                                  ).numpy()


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    for m in range(1, 100_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        de = d * c
        h *= de
        if abs(de - 1.0) < _EPS:
            break
    return h


def _stirling(a: float) -> float:
    """``lgamma(a) - ((a - 1/2) log a - a + log(2 pi)/2)`` for ``a >= 100`` (to 1e-18)."""
    return 1 / (12 * a) - 1 / (360 * a ** 3) + 1 / (1260 * a ** 5)


def _lgamma_ratio(a: float, b: float) -> float:
    """``lgamma(a + b) - lgamma(a)`` without the cancellation of two huge lgammas (at
    ``a = 5e5`` their difference lost 1e-9 absolute, 1e-10 of a t quantile)."""
    if a < 100.0:
        return math.lgamma(a + b) - math.lgamma(a)
    return ((a - 0.5) * math.log1p(b / a) + b * math.log(a + b) - b
            + _stirling(a + b) - _stirling(a))


def betainc(a: float, b: float, x: float, xc: float | None = None) -> float:
    """The regularised incomplete beta function ``I_x(a, b)``; ``xc`` = ``1 - x`` when the
    caller knows it better than ``1 - x`` rounds (x near 1, a large)."""
    xc = 1.0 - x if xc is None else xc
    if x <= 0.0:
        return 0.0
    if xc <= 0.0:
        return 1.0
    big, small = (a, b) if a >= b else (b, a)
    lbt = (_lgamma_ratio(big, small) - math.lgamma(small)
           + a * (math.log1p(-xc) if xc < 0.5 else math.log(x))
           + b * (math.log1p(-x) if x < 0.5 else math.log(xc)))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(lbt) * _betacf(a, b, x) / a
    return 1.0 - math.exp(lbt) * _betacf(b, a, xc) / b


def gammaincc(a: float, x: float) -> float:
    """The regularised upper incomplete gamma function ``Q(a, x)``."""
    if x <= 0.0:
        return 1.0
    if a < 100.0:
        lead = -x + a * math.log(x) - math.lgamma(a)
    else:  # the same, without cancelling two numbers of size a log a
        u = x / a - 1.0
        lead = (a * (math.log1p(u) - u) + 0.5 * math.log(a) - 0.5 * math.log(2 * math.pi)
                - _stirling(a))
    if x < a + 1.0:  # series for P, Q = 1 - P
        ap, s = a, 1.0 / a
        term = s
        for _ in range(100_000):
            ap += 1.0
            term *= x / ap
            s += term
            if abs(term) < abs(s) * _EPS:
                break
        return 1.0 - s * math.exp(lead)
    b = x + 1.0 - a  # continued fraction for Q (modified Lentz)
    c, d = 1.0 / _TINY, 1.0 / b
    h = d
    for i in range(1, 100_000):
        an = -i * (i - a)
        b += 2.0
        d = an * d + b
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = b + an / c
        c = c if abs(c) > _TINY else _TINY
        de = d * c
        h *= de
        if abs(de - 1.0) < _EPS:
            break
    return math.exp(lead) * h


def _invert(fun: Callable[[float], float], target: float, lo: float, hi: float) -> float:
    """``x`` in ``[lo, hi]`` with ``fun(x) = target`` for ``fun`` increasing: bracket
    growth, then bisection to rounding."""
    while fun(hi) < target:
        lo, hi = hi, 2.0 * hi
    for _ in range(2000):
        mid = 0.5 * (lo + hi)
        if mid <= lo or mid >= hi:
            break
        if fun(mid) < target:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


def student_t_ppf(p: float, dof: float) -> float:
    """The Student-t quantile ``t`` with ``P(T <= t) = p`` (scipy's ``stdtrit(dof, p)``)."""
    if not 0.0 < p < 1.0 or not dof > 0:
        return math.nan
    if p < 0.5:
        return -student_t_ppf(1.0 - p, dof)
    if p == 0.5:
        return 0.0

    def cdf(t: float) -> float:  # P(T <= t) for t >= 0, increasing
        return 1.0 - 0.5 * betainc(0.5 * dof, 0.5, dof / (dof + t * t),
                                   t * t / (dof + t * t))
    # the expansion in 1/dof about the normal quantile (Abramowitz & Stegun 26.7.5): where
    # its last term is below 1e-13 of z it is the quantile to rounding (a gain fit's many
    # degrees of freedom: no incomplete beta at all), else Newton's start (1-2 steps)
    z = ndtri(p)
    z2 = z * z
    g = ((z2 + 1) * z / 4, ((5 * z2 + 16) * z2 + 3) * z / 96,
         (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384,
         ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160)
    t = z + (g[0] + (g[1] + (g[2] + g[3] / dof) / dof) / dof) / dof
    if abs(g[3]) / dof ** 4 < 1e-13 * z:
        return t
    log_c = _lgamma_ratio(0.5 * dof, 0.5) - 0.5 * math.log(dof * math.pi)
    last = math.inf
    for _ in range(30):
        pdf = math.exp(log_c - 0.5 * (dof + 1) * math.log1p(t * t / dof))
        step = (cdf(t) - p) / pdf
        if not (math.isfinite(step) and 0.0 < t - step):
            break
        if abs(step) <= 1e-15 * t or (abs(step) >= 0.5 * last and abs(step) < 1e-12 * t):
            return t   # converged, or the steps are the cdf's rounding (no longer halving)
        t -= step
        last = abs(step)
    return _invert(cdf, p, 0.0, 4.0)


def chi2_isf(q: float, k: float) -> float:
    """The chi-square upper quantile ``x`` with ``P(X > x) = q`` for ``k`` degrees of
    freedom (scipy's ``chdtri(k, q)``)."""
    if not 0.0 < q < 1.0 or not k > 0:
        return math.nan
    return _invert(lambda x: -gammaincc(0.5 * k, 0.5 * x), -q, 0.0, max(2.0 * k, 4.0))


def ndtri(p: float) -> float:
    """The standard normal quantile (``statistics.NormalDist``: Wichura's AS241, ~1e-16)."""
    from statistics import NormalDist

    return NormalDist().inv_cdf(p)
