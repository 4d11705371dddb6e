"""What one probe window says about a signal and how sure it is: de-quantised RMS and gain SE.

The probe reports per channel the mean and AC RMS of ``n`` samples of ``floor(v + e)``
(``v`` the input in counts, ``e`` the ADC's analog noise, sd ``sigma`` LSB). Two facts set the
numbers here:

* **Quantisation is not the silence floor.** In silence every sample sits at one DC level, so
  the floor's RMS depends on where that level falls between two codes (with 0.5 LSB of noise
  and the bias on a code edge, 0.584 instead of 0.577 counts; with no noise 0 or 0.5). A tone
  sweeps the codes, so its quantisation adds 1/12 LSB^2 plus a ripple that depends on the
  amplitude (for a noiseless ADC +-0.6 counts^2 at 10-30 counts). Subtracting the silence
  floor in quadrature therefore biased small gains (-0.1 % at 0.03, -0.7 % at 0.01 on the
  bench board; +0.6 % at 0.1 and +1.6 % at 0.03 on a noiseless one). Here the analog noise
  ``sigma`` is solved from the silence reading, and a tone's amplitude from its (mean, RMS)
  with the exact moments of a quantised sine plus gaussian noise
  (E over the phase: ``floor(x) = x - 1/2 + sum_k sin(2 pi k x)/(pi k)``, with
  ``E exp(i z sin theta) = J0(z)``; for sigma = 0 the arcsine law level by level).
* **The scatter of an RMS from n samples.** The sample variance of a sine of power S in
  white noise of power N has variance ``(4 S N + 2 N^2)/n``; a window that does not cover the
  tone's phases evenly (few cycles, or a tone near a multiple of half the round rate) adds
  ``|K|^2/4`` to the relative variance of a gain, ``K = c2 - c1^2`` with
  ``c_m = mean_k exp(2 pi i m x k)``, ``x = f / rate`` (the phase of the channel against A0
  being unknown, this is its average over that phase). Below ~0.2 LSB of noise the
  quantisation error is not random and its share is about an upper bound (:func:`noise_power`).
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np

QUANT_VAR = 1.0 / 12.0
#: sigma below this (LSB) is a noiseless ADC: exact arcsine law instead of the series
SIGMA_EXACT = 2e-3
_KMAX = 2000


# --------------------------------------------------------------------------- moments
def _series_terms(sigma: float) -> np.ndarray:
    """Harmonics k that matter: exp(-2 pi^2 k^2 sigma^2) above ~1e-9."""
    kmax = math.ceil(math.sqrt(20.7 / (2 * math.pi ** 2 * sigma ** 2))) if sigma > 0 else _KMAX
    return np.arange(1, min(max(kmax, 1), _KMAX) + 1, dtype=np.float64)


def moments(mu: float, amp: float, sigma: float) -> tuple[float, float]:
    """(mean, variance) of ``floor(mu + amp sin(theta) + e)``, theta uniform, e ~ N(0, sigma^2)."""
    amp, sigma = abs(float(amp)), abs(float(sigma))
    if sigma < SIGMA_EXACT:
        return _moments_exact(mu, amp)
    from scipy.special import j0, j1

    k = _series_terms(sigma)
    if len(k) <= 8:                # the usual noisy ADC: a few terms, scalar math is faster
        ew = ew2 = cov = 0.0
        for kk in range(1, len(k) + 1):
            damp = math.exp(-2 * math.pi ** 2 * kk * kk * sigma * sigma)
            z = 2 * math.pi * kk * amp
            b0, b1 = float(j0(z)), float(j1(z))
            c, s = math.cos(2 * math.pi * kk * mu), math.sin(2 * math.pi * kk * mu)
            ew += s * b0 * damp / (math.pi * kk)
            ew2 += c * b0 * damp / (math.pi * kk) ** 2
            cov += c * damp * (amp * b1 + 2 * math.pi * kk * sigma ** 2 * b0) / (math.pi * kk)
        ew2 += QUANT_VAR
    else:
        damp = np.exp(-2 * math.pi ** 2 * k ** 2 * sigma ** 2)
        z = 2 * math.pi * k * amp
        b0 = j0(z) * damp
        c, s = np.cos(2 * math.pi * k * mu), np.sin(2 * math.pi * k * mu)
        ew = float(np.sum(s * b0 / (math.pi * k)))
        ew2 = QUANT_VAR + float(np.sum(c * b0 / (math.pi * k) ** 2))
        cov = float(np.sum(c * damp * (amp * j1(z) + 2 * math.pi * k * sigma ** 2 * j0(z))
                           / (math.pi * k)))
    var = amp * amp / 2 + sigma * sigma + ew2 - ew * ew + 2 * cov
    return mu - 0.5 + ew, max(var, 0.0)


def _moments_exact(mu: float, amp: float) -> tuple[float, float]:
    """Noiseless ADC: level probabilities of a sine from the arcsine law."""
    if amp < 1e-12:
        return float(math.floor(mu)), 0.0
    j = np.arange(math.floor(mu - amp), math.floor(mu + amp) + 1, dtype=np.float64)
    cdf = 0.5 + np.arcsin(np.clip((np.append(j, j[-1] + 1) - mu) / amp, -1, 1)) / math.pi
    p = np.diff(cdf)
    m = float(np.dot(p, j))
    return m, float(np.dot(p, (j - m) ** 2))


# --------------------------------------------------------------------------- inversions
@lru_cache(maxsize=256)
def silence_sigma(mean: float, rms: float) -> float:
    """The ADC's analog noise (sd, LSB) from a silent window's mean and RMS.

    Solves the two moments of ``floor(mu + e)`` for (mu, sigma) on a grid (the series in
    matrix form). Mean and RMS alone cannot tell a small noise on a DC level next to a code
    edge from a larger one further off (both give two codes in the same proportion): the
    larger sigma is taken, the usual state of a real ADC.
    """
    rms = float(rms)
    if rms <= 0:
        return 0.0
    if rms > 3.0:                  # far above one LSB: quantisation is plain 1/12
        return math.sqrt(max(rms * rms - QUANT_VAR, 0.0))
    sig = np.geomspace(0.02, 3.2, 240)
    # mu on a 1/400 LSB grid; the quantised mean is mu - 0.5 + ew with |ew| <= 0.5, so the
    # mu whose mean is ``mean`` lies in [mean, mean + 1]: only that stretch (and a point on
    # each side) is solved
    mu = float(mean) + np.arange(-1, 402) / 400
    k = np.arange(1, 52, dtype=np.float64)
    damp = np.exp(-2 * math.pi ** 2 * np.outer(k ** 2, sig ** 2))        # (K, S)
    arg = 2 * math.pi * np.outer(mu, k)                                    # (M, K)
    ew = (np.sin(arg) / (math.pi * k)) @ damp                              # (M, S)
    cs = np.cos(arg)
    var = (sig ** 2 + QUANT_VAR + (cs / (math.pi * k) ** 2) @ damp - ew ** 2
           + 4 * sig ** 2 * (cs @ damp))
    means = mu[:, None] - 0.5 + ew                                         # rises with mu
    curve = _interp_columns(float(mean), means, var)
    r = rms + 0.0005               # printed to 1/1000, truncated: the middle of that step
    d = curve - r * r
    tol = 2.0 * r * 6e-4 + 1e-7
    cross = np.nonzero(np.sign(d[:-1]) != np.sign(d[1:]))[0]
    if len(cross):                 # the largest sigma where the model meets the reading
        i = int(cross[-1])
        t = d[i] / (d[i] - d[i + 1])
        return float(sig[i] + t * (sig[i + 1] - sig[i]))
    ok = np.nonzero(np.abs(d) <= tol)[0]   # a flat stretch (two codes): its largest sigma
    if len(ok):
        return float(sig[ok[-1]])
    return 0.0 if d[0] > 0 else float(sig[-1])


def _interp_columns(x: float, xs: np.ndarray, ys: np.ndarray) -> np.ndarray:
    """``np.interp(x, xs[:, i], ys[:, i])`` for every column at once (xs rising)."""
    j = np.clip((xs < x).sum(axis=0), 1, len(xs) - 1)       # xs[j-1] < x <= xs[j]
    cols = np.arange(xs.shape[1])
    x0, x1, y0, y1 = xs[j - 1, cols], xs[j, cols], ys[j - 1, cols], ys[j, cols]
    t = np.clip((x - x0) / np.where(x1 > x0, x1 - x0, 1.0), 0.0, 1.0)
    return y0 + t * (y1 - y0)


def _mu_for_mean(mean: float, amp: float, sigma: float) -> float:
    """The DC level mu whose quantised mean is ``mean`` (the mean rises with mu)."""
    from scipy.optimize import brentq

    if sigma < SIGMA_EXACT and amp < 1e-12:
        return mean + 0.5          # a constant: any mu in [mean, mean+1) gives it
    lo, hi = mean - 0.5, mean + 1.5
    flo, fhi = moments(lo, amp, sigma)[0] - mean, moments(hi, amp, sigma)[0] - mean
    if flo >= 0 or fhi <= 0:
        return mean + 0.5
    return float(brentq(lambda m: moments(m, amp, sigma)[0] - mean, lo, hi, xtol=1e-9))


def signal_power(mean: float, rms: float, sigma: float) -> float:
    """Power (counts^2, = amplitude^2 / 2) of the sine behind a window's mean and AC RMS.

    ``rms`` as reported (the firmware truncates to 1/1000: half of that is added back).
    """
    v = (float(rms) + 0.0005) ** 2
    s0 = max(v - sigma * sigma - QUANT_VAR, 0.0)
    amp = math.sqrt(2 * s0)
    if sigma >= 0.8 or amp > 400:  # ripple below 1e-5 counts^2 (or 1 ppm of the power)
        return s0
    if sigma >= 0.3:               # the ripple is small: a fixed point on (mu, amp) contracts
        mu = float(mean) + 0.5
        for _ in range(60):
            m, var = moments(mu, amp, sigma)
            mu += float(mean) - m
            new = math.sqrt(2 * max(v - (var - amp * amp / 2), 0.0))
            done = abs(new - amp) < 1e-8 * (1 + amp) and abs(float(mean) - m) < 1e-8
            amp = new
            if done:
                break
        return amp * amp / 2
    return _power_low_noise(float(mean), v, sigma, amp)


def _power_low_noise(mean: float, v: float, sigma: float, amp0: float) -> float:
    """Little or no noise: the ripple is large, solve var(mu(amp), amp) = v by brentq."""
    from scipy.optimize import brentq

    def resid(a: float) -> float:
        return moments(_mu_for_mean(mean, a, sigma), a, sigma)[1] - v

    lo, hi = max(amp0 - 1.0, 0.0), amp0 + 1.0
    rlo, rhi = resid(lo), resid(hi)
    if rlo > 0 or rhi < 0:         # no bracket (a signal under one LSB): the plain estimate
        return amp0 * amp0 / 2
    amp = float(brentq(resid, lo, hi, xtol=1e-7 * (1 + amp0)))
    return amp * amp / 2


# --------------------------------------------------------------------------- scatter
def noise_power(sigma: float) -> float:
    """Random (sample-to-sample independent) noise power during a tone, counts^2.

    Analog noise plus the quantisation error, which is random as far as the noise dithers
    it (sigma >= 0.2 LSB: checked by Monte Carlo). With less noise the error is a fixed
    function of the phase whose scatter over a window no simple model follows (0.1-1.2x
    that of a random 1/12 LSB^2 at tones whose phases spread, measured): it is then counted
    as random, about an upper bound.
    """
    g = math.exp(-2 * math.pi ** 2 * sigma * sigma)
    return sigma * sigma + QUANT_VAR * max(1.0 - g, g)


def power_variance(power: float, noise: float, n: int) -> float:
    """Variance of a window's sample variance: sine of ``power`` in white ``noise``, n samples."""
    return (4.0 * max(power, 0.0) * noise + 2.0 * noise * noise) / max(int(n), 1)


def phase_cover_var(freq_hz: float, rate_hz: float, n: int) -> float:
    """|K|^2 / 4: relative variance a gain gets from samples that miss some of the phases.

    Averaged over the round rate's rounding (the probe reports it rounded down to 1/s), since
    near aliasing the exact value swings with n f / rate. (A sound card and probe whose
    clocks disagree by more than that move it further; it is then right on average.)
    """
    if not (rate_hz > 0 and freq_hz > 0 and n > 0):
        return 0.0
    acc = 0.0
    rates = float(rate_hz) + (np.arange(12) + 0.5) / 12
    for r in rates:
        x = float(freq_hz) / r
        c1, c2 = _dirichlet(x, n), _dirichlet(2 * x, n)
        acc += abs(c2 - c1 * c1) ** 2
    return acc / len(rates) / 4.0


def _dirichlet(x: float, n: int) -> complex:
    """mean over k < n of exp(2 pi i x k), in closed form."""
    a = math.pi * (x - round(x))
    if abs(math.sin(a)) < 1e-12:
        return complex(1.0, 0.0)
    mag = math.sin(n * a) / (n * math.sin(a))
    ph = 2 * math.pi * x * (n - 1) / 2
    return complex(mag * math.cos(ph), mag * math.sin(ph))


def gain_se(out_power: float, ref_power: float, out_noise: float, ref_noise: float, n: int,
            cover_var: float = 0.0) -> float:
    """Standard error of ``gain = sqrt(out_power / ref_power)`` (linear gain units).

    Delta method on the two RMS estimates (independent noise) plus the phase-cover term.
    A power near zero is floored at its own scatter, so a vanished signal gets a wide SE.
    """
    var_o = power_variance(out_power, out_noise, n)
    var_r = power_variance(ref_power, ref_noise, n)
    so = max(out_power, math.sqrt(var_o), 1e-12)
    sr = max(ref_power, math.sqrt(var_r), 1e-12)
    g2 = max(out_power, 0.0) / sr
    return math.sqrt(var_o / (4 * so * sr) + g2 * (var_r / (4 * sr * sr) + cover_var))


__all__ = ["QUANT_VAR", "moments", "silence_sigma", "signal_power", "noise_power",
           "power_variance", "phase_cover_var", "gain_se"]
