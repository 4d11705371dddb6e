"""Batched Levenberg-Marquardt on a cost with gradient and Gauss-Newton Hessian."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    pass


def _newton_gain(A: np.ndarray, g: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``g^T A^-1 g / 2``: the decrease a full Gauss-Newton step promises (inf where it
    cannot be computed, so that nothing stops on it)."""
    M = _damped(A, 1e-10 * d)
    try:
        x = np.linalg.solve(M, g[..., None])[..., 0]
    except np.linalg.LinAlgError:
        return np.full(len(g), np.inf)
    out = 0.5 * np.einsum("bp,bp->b", g, x)
    return np.where(np.isfinite(out) & (out >= 0), out, np.inf)


def _damped(A: np.ndarray, add: np.ndarray) -> np.ndarray:
    """``A + add * I + 1e-300 * I`` per batch member, added to the diagonal alone (the
    same sums, without two (B, P, P) identity products an iteration)."""
    M = A.copy()
    diag = np.einsum("bpp->bp", M)      # a writable view of the diagonals
    diag += add
    diag += 1e-300
    return M


def _lm(fun, theta0: np.ndarray, *, max_iter: int = 100, xtol: float = 1e-10,
        ftol: float = 1e-13, gain_abs: float = 0.0
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Batched Levenberg-Marquardt on ``fun(theta (B,P)) -> cost (B,), grad (B,P), H (B,P,P)``.

    Returns theta, cost, H (at the solution), converged mask, iterations. Each batch member
    has its own damping; converged members stop moving (they are still evaluated, which
    is cheaper than re-indexing every array). ``gain_abs``: where the cost is half a
    chi-square at unit noise, a full Gauss-Newton step that promises less than this is a
    step far inside the statistical error (1e-10: 1e-5 sigma), and the fit stops: a
    weakly determined nuisance otherwise crawls on for tens of iterations (Gauss-Newton's
    linear convergence where the residuals' curvature matters).
    """
    theta = np.array(theta0, dtype=float)
    B, P = theta.shape
    cost, g, A = fun(theta)
    lam = np.full(B, 1e-4)
    done = np.zeros(B, bool)
    it = 0
    while it < max_iter and not done.all():
        it += 1
        d = np.einsum("bpp->bp", A).copy()
        dmax = d.max(axis=1, keepdims=True)
        d = np.maximum(d, 1e-12 * dmax + 1e-300)
        # a minimum is reached when a full Gauss-Newton step promises less than ftol / 10:
        # the cost's own rounding (a nodal solve is good to ~1e-12 relative, its promised
        # gain floors at ~1e-14 of the cost) would otherwise keep the iterations going on
        # noise until the damping gives up or max_iter (ftol / 1000 stopped nothing there;
        # ftol itself stopped a slow crawl along a flat valley early)
        done |= _newton_gain(A, g, d) <= 0.1 * ftol * np.abs(cost) + gain_abs + 1e-300
        if done.all():
            break
        M = _damped(A, lam[:, None] * d)
        try:
            step = -np.linalg.solve(M, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -np.einsum("bpq,bq->bp", np.linalg.pinv(M), g)
        step = np.clip(step, -3.0, 3.0)  # no jump of more than e^3 per iteration
        step[done] = 0.0
        trial = theta + step
        ct, gt, At = fun(trial)
        # a step that changes the cost only by rounding is a converged step, not a failure:
        # rejecting it would grow the damping for nothing (iterations 12 -> 3 on noisy data)
        flat = np.abs(ct - cost) <= ftol * np.abs(cost) + 1e-300
        acc = ((ct <= cost) | flat) & ~done & np.isfinite(ct)
        small = np.abs(step).max(axis=1) < xtol
        rel = (cost - ct) <= ftol * np.abs(cost) + 1e-300
        newdone = acc & (small | rel | (ct < 1e-28 * max(1, P)))
        theta[acc] = trial[acc]
        g[acc] = gt[acc]
        A[acc] = At[acc]
        cost = np.where(acc, ct, cost)
        lam = np.where(acc, np.maximum(lam / 5, 1e-12), lam * 8)
        newdone |= (~acc) & (lam > 1e10)
        done |= newdone
    return theta, cost, A, done, it


#: public name for code that drives the solver itself (benchmarks against scipy)
levenberg_marquardt = _lm
