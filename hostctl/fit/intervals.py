"""Gain intervals, misfit and sensitivity checks from the Gauss-Newton Hessian."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from hostctl.fit.problem import _Problem
from hostctl.fit.settings import GOF_ALPHA, MISFIT_SIGMA, MISFIT_TRUST, NOISE_FIGURE_TOL, Z95

if TYPE_CHECKING:
    pass


def _n_informed(A: np.ndarray, n: int) -> int:
    """Parameters the rows actually inform (Jacobian column not ~0)."""
    return int((np.diag(A) > 1e-16 * max(1, n)).sum())


def _covariance(prob: _Problem, A: np.ndarray, led_only: list) -> tuple[np.ndarray, list[str]]:
    """Inverse of the unit-noise Gauss-Newton Hessian (J^T J for gain rows), plus plain
    warnings for what it cannot see."""
    p = len(prob.free)
    led_k = {k for ks, _ in led_only for k in ks}
    warn: list[str] = []
    P = A.shape[0]
    colnorm = np.sqrt(np.maximum(np.diag(A), 0))
    info = colnorm > 1e-6 * max(1.0, colnorm.max())
    cov = np.full((P, P), np.inf)
    idx = np.flatnonzero(info)
    if len(idx):
        sub = A[np.ix_(idx, idx)]
        d = np.sqrt(np.diag(sub))
        corr = sub / np.outer(d, d)
        cond = np.linalg.cond(corr)
        cov[np.ix_(idx, idx)] = np.linalg.pinv(corr) / np.outer(d, d)
        if cond > 1e10:
            names = [prob.free[i] for i in idx if i < p and i not in led_k]
            if names:
                warn.append(f"{', '.join(names)} are confounded (condition number {cond:.1e}):"
                            " the data cannot tell them apart; intervals are not reliable")
    for k in range(p):
        name = prob.free[k]
        if k in led_k or name not in prob.circ.resistors:  # nuisances are held by priors
            continue
        if not info[k]:
            warn.append(f"{name}: the data do not determine it (no tones where it changes the "
                        "response); the value is only a starting guess")
        elif np.isfinite(cov[k, k]) and math.sqrt(max(cov[k, k], 0)) > 0.35:
            f = math.exp(min(Z95 * math.sqrt(cov[k, k]), 700.0))   # no overflow
            warn.append(f"{name}: poorly determined by the data (95% interval spans a factor "
                        f"{f:.3g} either way); add tones near its corner")
    return cov, warn


def _sensitivity_warnings(prob: _Problem, theta: np.ndarray, led_only: list,
                          already: list[str]) -> list[str]:
    """Warn about resistors that barely change the response at any measured gain tone.

    With exact data even a tiny sensitivity pins a value down (the interval is then
    ~0 wide and honest), but a real bench is not exact: say so plainly."""
    if not prob.ng:
        return []
    p = len(prob.free)
    sens = prob.gain_sensitivity(theta[:p])
    led_k = {k for ks, _ in led_only for k in ks}
    out = []
    for k in range(p):
        name = prob.free[k]
        if k in led_k or name not in prob.circ.resistors or any(
                w.startswith(name + ":") for w in already):
            continue
        if sens[k] < 0.01:
            out.append(f"{name}: no measured tone is near its corner (a 1% change moves the "
                       f"response by at most {sens[k]:.1e}%); add tones near "
                       f"{prob.circ.corner_hz(name, math.exp(theta[k]), prob.caps):.4g} Hz")
    return out


def _misfit_channels(prob: _Problem, theta: np.ndarray) -> dict[str, float]:
    """Channels whose gains the fitted model misses by more than ``MISFIT_TRUST`` rms (log).

    Noise does not do that (ADC noise near the floor is flagged before the fit); a wrong
    model does: swapped outputs, the wrong --circuit, a section wired differently."""
    if not prob.ng:
        return {}
    p = len(prob.free)
    r = prob.gain_logh(theta[:p])
    r -= prob.logg
    out = {}
    for c in np.unique(prob.chg).tolist():
        rms = float(np.sqrt(np.mean(r[prob.chg == c] ** 2)))
        if rms > MISFIT_TRUST:
            out[prob.circ.channels[c]] = rms
    return out


def _fewest_rows(ch: np.ndarray) -> int:
    """Rows of the least-measured channel that has any."""
    counts = np.bincount(ch)
    return int(counts[counts > 0].min())



def _gof_channels(prob: _Problem, theta: np.ndarray, chi2: float | None, dof: int
                  ) -> dict[str, float]:
    """Chi-square goodness of fit against the probe's noise figures: {} when the model
    explains the gains within the noise, else each contradicted channel with its rms
    residual in units of the measured noise (the worst one if none fails alone)."""
    from hostctl.fit.special import chi2_isf

    z = _gain_z(prob, theta)
    # a nuisance pushed far outside its prior (a 50 ohm "ESR" faking a missing buffer) is a
    # misfit too: the prior rows count as observations
    total = float(z @ z) + prior_chi2(prob, theta)
    tol2 = NOISE_FIGURE_TOL ** 2
    if dof <= 0 or total <= tol2 * chi2_isf(GOF_ALPHA, dof):
        return {}
    out: dict[str, float] = {}
    for c in np.unique(prob.chg).tolist():
        zc = z[prob.chg == c]
        rms = float(np.sqrt(np.mean(zc * zc)))
        # significant AND large: a wrong circuit misses by many sigma; a residual a little
        # above the noise figures (a noiseless ADC's quantisation is not random) only
        # widens the intervals (Birge ratio), it does not condemn the model
        if float(zc @ zc) > tol2 * chi2_isf(GOF_ALPHA, len(zc)) and rms > MISFIT_SIGMA:
            out[prob.circ.channels[c]] = rms
    return out


def _gain_z(prob: _Problem, theta: np.ndarray) -> np.ndarray:
    """Gain residuals in units of the measured noise."""
    p = len(prob.free)
    z = prob.gain_logh(theta[:p])
    z -= prob.logg
    z /= prob.sg
    return z


def gain_chi2(prob: _Problem, theta: np.ndarray) -> float:
    """Chi-square of the gain rows at ``theta`` against the measured noise."""
    z = _gain_z(prob, theta)
    return float(z @ z)


def prior_chi2(prob: _Problem, theta: np.ndarray) -> float:
    """Sum of squared prior residuals (nuisances held by their priors, user priors)."""
    if not len(prob.prior_idx):
        return 0.0
    rp = (theta[prob.prior_idx] - prob.prior_mu) / prob.prior_sig
    return float(rp @ rp)
