"""Problem 1: gradient descent does not go nuts with ill-conditioning.

Square least squares ``y = F w* + eps`` with singular values from ``alpha`` down to a tiny
``s_min``. Inverting F amplifies the noise by ``1/s_min``; gradient descent from ``w0 = 0``
with a step that cannot diverge (``eta <= 2/alpha**2``, so every eigenvalue of
``I - eta F^T F`` lies in [-1, 1]) obeys, at every step,

    ||w_t|| <= ||w_{t-1}|| + eta * alpha * ||y||        (alpha = sigma_max(F), the 2-norm)

hence ``||w_k - w*|| <= k eta alpha ||y|| + ||w*||``: at most linear growth. With a step
past ``2/alpha**2`` the hypothesis fails and so does the inequality (shown as a control).

hostctl's fit leans on the same fact: it takes damped steps and stops early, so a
direction the data barely sees (a resistor whose corner lies outside the tones) drifts
slowly instead of exploding, and a prior (problem 2) pins it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class GDRun:
    eta: float
    alpha: float
    norms: np.ndarray          # ||w_t||, t = 0..k
    step_slack: np.ndarray     # ||w_{t-1}|| + eta alpha ||y|| - ||w_t||, t = 1..k (>= 0 claimed)
    errors: np.ndarray         # ||w_t - w*||, t = 0..k
    linear_bound: np.ndarray   # t eta alpha ||y|| + ||w*||

    @property
    def inequality_holds(self) -> bool:
        # relative tolerance for float64 rounding in the norms
        return bool(np.all(self.step_slack >= -1e-12 * (1 + self.norms[1:])))

    @property
    def first_violation(self) -> int | None:
        bad = np.nonzero(self.step_slack < -1e-12 * (1 + self.norms[1:]))[0]
        return int(bad[0]) + 1 if bad.size else None


@dataclass
class P1Result:
    n: int
    alpha: float
    s_min: float
    noise: float
    w_star_norm: float
    inverse_error: float       # ||F^{-1} y - w*||
    invisible_component: float  # |v_min . w*|: the part of w* the data cannot see
    gd: GDRun                  # eta = 1/alpha^2 (safe)
    gd_unstable: GDRun         # eta = 2.5/alpha^2 (hypothesis broken)
    noise_sweep: list[tuple[float, float, float]]  # (noise, inverse error, GD error at k)


def make_problem(n: int = 8, alpha: float = 5.0, s_min: float = 1e-10, noise: float = 1e-3,
                 seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """F = U diag(s) V^T: n-1 singular values from alpha down to 0.2, one tiny ``s_min``.

    Returns F, w*, y and the unit noise direction (fixed, so a noise sweep is comparable).
    """
    rng = np.random.default_rng(seed)
    u, _ = np.linalg.qr(rng.standard_normal((n, n)))
    v, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = np.append(np.linspace(alpha, 0.2, n - 1), s_min)
    f = u @ np.diag(s) @ v.T
    w_star = rng.standard_normal(n)
    e = rng.standard_normal(n)
    e /= np.linalg.norm(e)
    return f, w_star, f @ w_star + noise * e, e


def gradient_descent(f: np.ndarray, y: np.ndarray, w_star: np.ndarray, eta: float,
                     steps: int) -> GDRun:
    """The homework's update w_t = w_{t-1} - eta F^T (F w_{t-1} - y) from w_0 = 0."""
    alpha = float(np.linalg.norm(f, 2))
    ynorm = float(np.linalg.norm(y))
    w = np.zeros(f.shape[1])
    norms = [0.0]
    errors = [float(np.linalg.norm(w - w_star))]
    for _ in range(steps):
        w = w - eta * (f.T @ (f @ w - y))
        norms.append(float(np.linalg.norm(w)))
        errors.append(float(np.linalg.norm(w - w_star)))
    norms_a = np.array(norms)
    t = np.arange(steps + 1)
    return GDRun(
        eta=eta, alpha=alpha, norms=norms_a,
        step_slack=norms_a[:-1] + eta * alpha * ynorm - norms_a[1:],
        errors=np.array(errors),
        linear_bound=t * eta * alpha * ynorm + float(np.linalg.norm(w_star)),
    )


def run(n: int = 8, alpha: float = 5.0, s_min: float = 1e-10, noise: float = 1e-3,
        steps: int = 2000, seed: int = 0) -> P1Result:
    f, w_star, y, e = make_problem(n, alpha, s_min, noise, seed)
    w_inv = np.linalg.solve(f, y)
    v_min = np.linalg.svd(f)[2][-1]
    gd = gradient_descent(f, y, w_star, 1.0 / alpha**2, steps)
    gd_bad = gradient_descent(f, y, w_star, 2.5 / alpha**2, 60)
    sweep = []
    for nz in (0.0, 1e-9, 1e-6, 1e-3):
        y2 = f @ w_star + nz * e
        inv_err = float(np.linalg.norm(np.linalg.solve(f, y2) - w_star))
        g = gradient_descent(f, y2, w_star, 1.0 / alpha**2, steps)
        sweep.append((nz, inv_err, float(g.errors[-1])))
    return P1Result(n=n, alpha=alpha, s_min=s_min, noise=noise,
                    w_star_norm=float(np.linalg.norm(w_star)),
                    inverse_error=float(np.linalg.norm(w_inv - w_star)),
                    invisible_component=abs(float(v_min @ w_star)),
                    gd=gd, gd_unstable=gd_bad, noise_sweep=sweep)


def main() -> None:
    r = run()
    g = r.gd
    print(f"Problem 1: n = {r.n}, alpha = sigma_max(F) = {r.alpha:g}, sigma_min = {r.s_min:g}, "
          f"||w*|| = {r.w_star_norm:.3f}")
    print(f"  inverse  ||F^-1 y - w*||            = {r.inverse_error:.3e}  (noise {r.noise:g})")
    print(f"  GD eta = 1/alpha^2, {len(g.norms) - 1} steps:")
    print(f"    ||w_t|| <= ||w_t-1|| + eta alpha ||y|| at every step: {g.inequality_holds} "
          f"(min slack {g.step_slack.min():.3e})")
    print(f"    ||w_k - w*|| <= k eta alpha ||y|| + ||w*|| at every k: "
          f"{bool(np.all(g.errors <= g.linear_bound + 1e-12))}")
    print(f"    final error ||w_k - w*|| = {g.errors[-1]:.4f}   max over t = {g.errors.max():.4f}"
          f"   (|v_min . w*| = {r.invisible_component:.4f}: the part no data can reveal)")
    b = r.gd_unstable
    print(f"  GD eta = 2.5/alpha^2 (> 2/alpha^2, hypothesis broken): inequality first fails "
          f"at step {b.first_violation}; ||w_60|| = {b.norms[-1]:.3e}")
    print("  noise on y    ||F^-1 y - w*||    GD ||w_k - w*||")
    for nz, ie, ge in r.noise_sweep:
        print(f"  {nz:9.0e}    {ie:15.3e}    {ge:15.4f}")


if __name__ == "__main__":
    main()
