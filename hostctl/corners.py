"""Corners of the circuit as built, and the resistors that put them on the target.

The target names corner frequencies the way the course does: each section is a first-order
RC whose response is 3 dB down at its corner. On a real build the sections load each other
(a passive band-pass), the probe loads the outputs, and the design ``R = 1/(2 pi f C)`` is
off. So the design asks the circuit's own model to reach, at each target corner, the level
the ideal sections reach there (1/sqrt(2) for a single section; for a band-pass the product
of its two sections), and solves for the resistors. On an ideal circuit this is exactly
``1/(2 pi f C)``; on a passive band-pass it is what that build needs.

numpy only (``Circuit.magnitude``): designing parts must not wait for torch.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hostctl.circuits import Circuit
    from hostctl.target import Target


def _sections(circ: Circuit, channel: str) -> dict[str, str]:
    return {r: kind for r, (ch, kind) in (circ.sections or {}).items() if ch == channel}


def reference_levels(circ: Circuit, target: Target, channel: str) -> list[tuple[float, float]]:
    """(corner Hz, |H| the ideal sections reach there) for each target corner of a channel."""
    secs = _sections(circ, channel)
    corners = {r: target.corner_for(circ, r) for r in secs}
    out = []
    for r in secs:
        f = corners[r]
        level = 1.0
        for r2, kind in secs.items():
            x = f / corners[r2]
            level *= 1 / math.sqrt(1 + x * x) if kind == "low" else x / math.sqrt(1 + x * x)
        out.append((f, level))
    return out


def _mag(circ: Circuit, f: Any, values: Mapping[str, float], caps: Any, channel: str
         ) -> np.ndarray:
    return np.asarray(circ.magnitude(np.atleast_1d(np.asarray(f, float)), values, caps)[channel])


def values_for_target(circ: Circuit, target: Target, caps: Any,
                      start: Mapping[str, float], params: Mapping[str, float] | None = None
                      ) -> dict[str, float]:
    """Resistors that make the model reach the reference levels at the target corners,
    channel by channel (each channel's resistors shape only that channel)."""
    out = dict(start)
    extra = dict(params or {})
    for ch in circ.channels:
        secs = list(_sections(circ, ch))
        if not secs:
            continue
        refs = reference_levels(circ, target, ch)
        freqs = np.array([f for f, _ in refs])
        want = np.log([lv for _, lv in refs])

        def resid(logr: np.ndarray, secs=secs, freqs=freqs, want=want, ch=ch) -> np.ndarray:
            vals = {**out, **extra, **dict(zip(secs, np.exp(logr), strict=True))}
            h = _mag(circ, freqs, vals, caps, ch)
            return np.log(np.maximum(h, 1e-300)) - want

        x = _gauss_newton(resid, np.log([out[r] for r in secs]))
        out.update(dict(zip(secs, np.exp(x), strict=True)))
    return out


def _gauss_newton(resid: Any, x: np.ndarray, iters: int = 40) -> np.ndarray:
    """Least squares for one or two log-resistors (numpy only: scipy.optimize costs the
    design command half a second of import): damped Gauss-Newton, forward-difference
    Jacobian."""
    r = resid(x)
    lam = 1e-6
    for _ in range(iters):
        J = np.empty((len(r), len(x)))
        for j in range(len(x)):
            d = np.zeros_like(x)
            d[j] = 1e-7
            J[:, j] = (resid(x + d) - r) / 1e-7
        A = J.T @ J
        step = -np.linalg.solve(A + lam * np.diag(np.diag(A) + 1e-12), J.T @ r)
        step = np.clip(step, -1.0, 1.0)
        r_new = resid(x + step)
        if r_new @ r_new < r @ r:
            x, r, lam = x + step, r_new, lam / 10
            if np.abs(step).max() < 1e-13:
                break
        else:
            lam *= 10
            if lam > 1e8:
                break
    return x


def corner_of(circ: Circuit, target: Target, resistor: str, values: Mapping[str, float],
              caps: Any, params: Mapping[str, float] | None = None) -> float:
    """Where the built channel crosses the reference level of ``resistor``'s target corner:
    the corner these parts really give (nan if it never crosses near the target)."""
    ch = (circ.sections or {})[resistor][0]
    refs = dict(reference_levels(circ, target, ch))
    f0 = target.corner_for(circ, resistor)
    level = refs[f0]
    vals = {**dict(values), **dict(params or {})}
    f = f0 * np.geomspace(0.25, 4.0, 801)
    g = np.log(np.maximum(_mag(circ, f, vals, caps, ch), 1e-300)) - math.log(level)
    cross = np.flatnonzero(np.sign(g[1:]) != np.sign(g[:-1]))
    if not len(cross):
        return math.nan
    i = cross[np.argmin(np.abs(np.log(f[cross] / f0)))]
    # the crossing inside the bracket to rounding (a linear guess between grid points is
    # off by ~1e-6, which an ideal circuit's 1/(2 pi R C) check sees)
    def gl(lf: float) -> float:
        return float(np.log(max(_mag(circ, math.exp(lf), vals, caps, ch)[0], 1e-300))
                     - math.log(level))

    a, b = math.log(f[i]), math.log(f[i + 1])
    ga = gl(a)
    for _ in range(60):  # bisection to rounding (numpy only, no scipy import)
        m = 0.5 * (a + b)
        gm = gl(m)
        if (gm > 0) == (ga > 0):
            a, ga = m, gm
        else:
            b = m
        if b - a < 1e-15:
            break
    return float(math.exp(0.5 * (a + b)))
