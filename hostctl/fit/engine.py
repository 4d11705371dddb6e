"""The fit itself, as stages: gains, LEDs, assessment, intervals, result."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.circuits import LED_THRESHOLD, Circuit, capacitances, get_circuit
from hostctl.dataset import MeasurementSet
from hostctl.errors import InputError
from hostctl.fit.choice import candidates, choose
from hostctl.fit.intervals import (
    _covariance,
    _fewest_rows,
    _gof_channels,
    _misfit_channels,
    _n_informed,
    _sensitivity_warnings,
    gain_chi2,
    prior_chi2,
)
from hostctl.fit.led import (
    _check_threshold_identifiable,
    _inside,
    _led_interval,
    _near_switch,
    _on_channels,
    _profile_threshold,
)
from hostctl.fit.ledfast import _fit_leds_consistent
from hostctl.fit.lm import _lm
from hostctl.fit.notebook import _fit_notebook
from hostctl.fit.problem import SwitchVoltage, _build, _Problem, _subproblem, measured_capacitors
from hostctl.fit.result import FitResult, _result
from hostctl.fit.settings import (
    LED_LAPSE,
    LED_MISFIT_FRACTION,
    LOSSES,
    MAP_GAIN_ABS,
    MISFIT_RMS,
    MISFIT_TRUST,
    NOISE_FIGURE_TOL,
    PRIOR_Z_LIMIT,
    S_GAIN_FLOOR,
    SIGMA_SCHEDULE,
    Z95,
)
from hostctl.fit.starts import _default_base, _grid_starts, _groups, _init_theta, _linear_start
from hostctl.fit.thresholds import (
    _fit_each,
    _over_nuisances,
    _per_led_thresholds,
    _threshold_conflicts,
)
from hostctl.ledrule import LedRule, as_rule, engine_form

if TYPE_CHECKING:
    pass


def fit(data: MeasurementSet, circuit: Circuit | str, *, capacitance: Any = 1e-6,
        led_threshold: LedRule | float | Mapping[str, float] | str = LED_THRESHOLD,
        loss: str = "auto",
        prior: Mapping[str, tuple[float, float]] | None = None,
        fixed: Mapping[str, float] | None = None,
        init: Mapping[str, float] | float | None = None,
        lr: float | None = None, steps: int | None = None) -> FitResult:
    """Fit the circuit's free resistors to ``data``.

    ``circuit`` names a preset or a family of presets (``color-organ``: buffered, passive,
    ideal): a family's members are all fitted and the data choose (hostctl.fit.choice); a
    :class:`Circuit` is fitted as it is.

    ``init`` (ohm, one value or per resistor) replaces the automatic starts: it exists to
    test the optimiser's basin, not because anyone should need it. ``lr``/``steps`` only
    apply to the notebook losses.
    """
    import torch

    # a hostctl.ledrule rule, or its older spellings: converted once, here
    led_threshold = engine_form(as_rule(led_threshold))
    t0 = time.perf_counter()
    nthreads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give
    try:
        def one(d: MeasurementSet, c: Circuit) -> FitResult:
            return _fit(d, c, capacitance, led_threshold, loss, prior, fixed, init, lr,
                        steps, t0)
        if loss != "auto":
            return one(data, get_circuit(circuit) if isinstance(circuit, str) else circuit)
        return choose(data, candidates(circuit), one)
    finally:
        torch.set_num_threads(nthreads)


@dataclass
class _Run:
    """What the stages of one fit pass along."""

    prob: _Problem
    theta: np.ndarray
    A: np.ndarray | None = None
    s_gain: float = 1.0
    gain_rms: float = 0.0
    iters: int = 0
    converged: bool = True
    method: str = "gauss-newton"
    warns: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    #: goodness of fit of the gain rows: chi-square, its degrees of freedom, per channel
    chi2: float | None = None
    dof: int = 0
    prior_chi2: float = 0.0
    #: the 95 % quantile used for gain intervals (normal, or Student-t on few residuals)
    quantile: float = Z95


def _fit(data, circuit, capacitance, led_threshold, loss, prior, fixed, init, lr, steps,
         t0) -> FitResult:
    circ = get_circuit(circuit) if isinstance(circuit, str) else circuit
    if loss not in LOSSES:
        raise InputError(f"unknown loss '{loss}' (known: {', '.join(LOSSES)})")
    caps = capacitances(circ, capacitance)
    each_volts = isinstance(led_threshold, SwitchVoltage) and led_threshold.volts == \
        "estimate-each"
    if led_threshold == "estimate-each" or each_volts:
        if loss != "auto":
            raise InputError("the notebook losses use a fixed LED threshold; do not combine "
                             "them with {led_threshold} estimate-each").naming()
        return _fit_each(data, circ, capacitance, prior, fixed, init, t0, volts=each_volts)
    prob = _build(data, circ, caps, led_threshold, prior, fixed)
    measured_capacitors(prob, capacitance)
    th_init = _init_theta(prob, init)
    if loss != "auto":
        return _teaching(prob, loss, th_init, lr, steps, t0)
    groups = _groups(prob)
    gain_ch = set(prob.chg.tolist())
    led_only = [(ks, ch) for ks, ch in groups if not (ch & gain_ch)]
    if prob.nl and prob.est_t:
        _check_threshold_identifiable(prob, gain_ch)
    run = _Run(prob, th_init.copy() if th_init is not None else _default_base(prob),
               warns=list(prob.warnings))
    if prob.ng:
        _fit_gains(run, th_init is None)
    known = _fit_leds_consistent(run, led_only) if prob.nl and th_init is None else None
    if prob.nl and known is None:
        _fit_leds(run, th_init is not None)
    misfit = _assess_gains(run)
    ci, ci_method = _gain_intervals(run, led_only, known)
    n_rej, led_misfit = _led_intervals(run, led_only, ci, ci_method, known)
    t_ci, conflicts = _shared_threshold(run, data, led_only, ci, n_rej, capacitance, prior)
    if any(m == "data-consistent" for m in ci_method.values()):
        names = ", ".join(k for k, m in ci_method.items() if m == "data-consistent")
        run.notes.append(f"{names}: the 95% interval is the data-consistent interval: every "
                         "value in it reproduces all accepted LED observations (exact, not "
                         "statistical)")
    if n_rej:
        run.notes.append(f"{n_rej} LED observation(s) disagree with the fit and were treated "
                         "as noise; intervals use the remaining observations")
    if led_misfit:
        run.warns.append("LED observations contradict the circuit's model ("
                         + "; ".join(led_misfit) + " disagree with the fit): check the LED "
                         "wiring (each LED on its own channel's input) and the circuit; the "
                         "values are not to be used")
    if not run.converged:
        run.warns.append(_NOT_CONVERGED.format(n=run.iters))
    res = _result(prob, run.theta, ci, ci_method, run.converged, run.iters, t0, run.method,
                  "auto", run.warns, run.notes)
    # values the optimiser did not settle on are no answer, however well they fit
    res.trusted = not conflicts and not misfit and not led_misfit and run.converged
    res.chi2, res.dof, res.prior_chi2 = run.chi2, run.dof, run.prior_chi2
    res.noise = "measured" if prob.noise_known else ("estimated" if prob.ng else "none")
    _per_led_thresholds(run, res, gain_ch)
    if t_ci is not None:
        res.led_threshold_ci95 = (math.exp(t_ci[0]), math.exp(t_ci[1]))
    if prob.est_volts and res.led_threshold is not None:
        # a switching voltage measured against each tone's reference: judged on volts
        chans = sorted({prob.circ.channels[c] for c in prob.chl.tolist()})
        res.led_vf = res.led_vf or {c: res.led_threshold for c in chans}
        res.led_threshold = None
    return res


#: the warning of a fit whose optimiser stopped before it met its stop rule
_NOT_CONVERGED = ("the fit did not converge ({n} iterations without meeting the stop rule): "
                  "the values are where the search stopped, not a fit; not to be used")


def _teaching(prob: _Problem, loss: str, th_init: np.ndarray | None, lr: float | None,
              steps: int | None, t0: float) -> FitResult:
    """The notebook's losses by plain gradient descent (teaching mode, no intervals)."""
    if prob.est_t:
        raise InputError("the notebook losses use a fixed LED threshold (0.5 crossing); "
                         "do not combine them with {led_threshold} estimate").naming()
    lr_ = float(lr) if lr is not None else 200.0
    st = int(steps) if steps is not None else 100_000
    start = th_init if th_init is not None else np.array(
        [math.log(500.0 * 1e-6 / prob.caps[r]) for r in prob.free])
    theta, iters, conv, lval = _fit_notebook(prob, loss, start, lr_, st)
    warns = list(prob.warnings)
    notes = [f"teaching mode: plain gradient descent on R in ohms (lr {lr_:g}), "
             f"final loss {lval:.3g}; no interval is computed"]
    if not conv:
        warns.append(f"gradient descent stopped after {iters} steps without meeting the "
                     "notebook's stop rule (loss < 1e-6 or |grad| < 1e-6)")
    res = _result(prob, theta, {}, {k: "none" for k in prob.free}, conv, iters,
                  t0, loss, loss, warns, notes)
    res.trusted = bool(conv)
    return res


def _fit_gains(run: _Run, auto_start: bool) -> None:
    """Gain rows: LM on the log error, weighted by the measured noise where the probe gave
    it. Also the pilot that sets the noise scale the LED rows and priors are weighed by."""
    prob, p = run.prob, len(run.prob.free)
    gprob = _subproblem(prob, np.arange(prob.ng)) if prob.nl else prob
    theta = run.theta
    if auto_start:
        lin = _linear_start(prob)
        for k, v in lin.items():
            theta[k] = v
        if any(k not in lin for k in range(p) if prob.free[k] in prob.circ.resistors):
            theta = _grid_starts(gprob, theta, 0.3, 1.0, top=1)[0]
    # with the probe's noise figures the gain rows' weight is known before any fit: priors
    # (nuisances) join the first fit; without them a prior-free pilot measures the noise
    # (nuisances too: a pilot without their priors lets an ESR wander off from a far start)
    nuis = any(prob.free[k] not in prob.circ.resistors for k in prob.prior_idx)
    use_prior_first = (not prob.nl and len(prob.prior_idx) == 0) or prob.sg is not None or nuis
    if nuis and prob.sg is None:
        # a pilot that measures the noise: only the nuisances' priors, not a user's wish
        keep = np.array([prob.free[k] not in prob.circ.resistors for k in prob.prior_idx])
        gprob = replace(gprob, prior_idx=gprob.prior_idx[keep], prior_mu=gprob.prior_mu[keep],
                        prior_sig=gprob.prior_sig[keep])

    def gfun(th):
        return gprob.objective(th, use_prior=use_prior_first)

    theta_b, cost, A, done, it = _lm(gfun, theta[None])
    run.iters += it
    rms = math.sqrt(2 * cost[0] / max(prob.ng, 1))
    if rms > MISFIT_RMS * (1.0 if prob.sg is None else 1.0 / float(np.median(prob.sg))) \
            and auto_start:
        starts = [theta_b[0]] + _grid_starts(gprob, theta_b[0], 0.3, 1.0, top=3)
        tb, cb, Ab, db, itb = _lm(gfun, np.stack(starts))
        run.iters += itb
        best = int(np.argmin(cb))
        theta_b, cost, A, done = (x[best:best + 1] for x in (tb, cb, Ab, db))
        run.notes.append(f"first start left a large misfit; best of {len(starts)} starts kept")
    run.theta = theta_b[0]
    run.converged &= bool(done[0])
    run.dof = prob.ng - _n_informed(A[0], prob.ng)
    run.chi2 = 2 * float(cost[0])
    _noise_scale(run)
    run.A = A / run.s_gain ** 2  # rows at unit noise
    if prob.nl or len(prob.prior_idx):
        # weighting gain rows against LED/prior terms: below ~1 ppm the residuals are
        # rounding noise, and dividing by it would make the cost itself noisy
        run.s_gain = max(run.s_gain, S_GAIN_FLOOR)
    if len(prob.prior_idx) and not prob.nl and prob.sg is None:
        # MAP: prior rows against gain rows scaled to unit noise
        s = run.s_gain
        theta_b, cost, A, done, it = _lm(lambda th: prob.objective(th, s_gain=s),
                                         run.theta[None], gain_abs=MAP_GAIN_ABS)
        run.iters += it
        run.theta, run.A = theta_b[0], A  # rows at unit noise, plus the prior's
        run.converged &= bool(done[0])
    if prob.sg is not None:  # the statistics at the final estimate, priors counted apart
        run.chi2 = gain_chi2(prob, run.theta)
        run.prior_chi2 = prior_chi2(prob, run.theta)


def _noise_scale(run: _Run) -> None:
    """The gain rows' noise: the probe's measured figures (inflated by the Birge ratio when
    the residuals scatter more), or, without figures, the residuals' own rms with a
    Student-t quantile for few degrees of freedom -- and none left means no interval."""
    from hostctl.fit.special import student_t_ppf

    prob = run.prob
    dof = run.dof
    run.gain_rms = math.sqrt(run.chi2 / max(prob.ng, 1)) if prob.sg is None else 0.0
    if prob.sg is not None:
        birge = run.chi2 / dof if dof > 0 else 1.0
        run.s_gain = math.sqrt(max(birge, 1.0))
        if birge > NOISE_FIGURE_TOL ** 2:
            run.notes.append(f"the gains scatter {run.s_gain:.2f}x the probe's noise figures: "
                             "the intervals are widened by that factor")
        run.quantile = Z95
        return
    if dof <= 0:
        # weigh the rows (against priors) by their own residual, as a fit with one spare
        # row would; but no interval: nothing is left to judge the noise by
        run.s_gain = max(math.sqrt(run.chi2), 1e-12)
        run.quantile = math.inf
        run.warns.append(f"{prob.ng} gain value(s) for {len(prob.free)} unknown(s) and no "
                         "noise figures: nothing is left to judge the noise by, so the "
                         "values are open (add tones)")
        return
    run.s_gain = max(math.sqrt(run.chi2 / dof), 1e-12)
    run.quantile = student_t_ppf(0.975, dof)


def _fit_leds(run: _Run, given_start: bool) -> None:
    """LED rows: probit with an annealed noise scale, multi-start at the coarse stage."""
    prob, s_gain = run.prob, run.s_gain
    run.method = "joint" if prob.ng else "led-interval"
    # with a free threshold, wide smoothing prefers the stop-band power law (where R
    # and t trade off exactly): start finer
    sched = SIGMA_SCHEDULE[2:] if prob.est_t else SIGMA_SCHEDULE
    if given_start:
        starts = [run.theta]
    else:
        starts = _grid_starts(prob, run.theta, sched[0], s_gain, top=3)
        if prob.ng:
            starts = [run.theta] + starts
    th_b = np.stack(starts)
    for si, sigma in enumerate(sched):
        sp = prob if si < 2 else _near_switch(prob, th_b, sigma)

        def fun(th, sigma=sigma, lapse=0.0 if si == 0 else LED_LAPSE, sp=sp):
            return sp.objective(th, sigma=sigma, s_gain=s_gain, lapse=lapse)
        last = si == len(sched) - 1
        tb, cb, Ab, db, it = _lm(fun, th_b, max_iter=40 if last else 25,
                                 xtol=1e-8 if last else 1e-4, ftol=1e-12 if last else 1e-8)
        run.iters += it
        if len(th_b) > 1 and (si >= 1 or last):
            tb, cb, Ab, db = (x[_survivors(tb, cb, last)] for x in (tb, cb, Ab, db))
        th_b = tb
        run.A, done = Ab, db
    run.theta = th_b[0]
    run.converged &= bool(done[0])


def _survivors(tb: np.ndarray, cb: np.ndarray, last: bool) -> np.ndarray:
    """Starts that misclassify what another start explains drop out; twins (same basin)
    need not run twice; by the last stage only the best remains."""
    if last:
        return np.arange(len(cb)) == int(np.argmin(cb))
    keep = cb <= cb.min() + 10.0
    for i in range(len(cb)):
        for j in range(i):
            if keep[i] and keep[j] and np.abs(tb[i] - tb[j]).max() < 1e-2:
                keep[i] = cb[i] < cb[j]
                keep[j] = not keep[i]
    return keep


def _assess_gains(run: _Run) -> dict[str, float]:
    """Channels whose gains the model cannot follow, with a warning naming them.

    With the probe's noise figures this is a chi-square goodness-of-fit test (the data
    contradict the model beyond what the measured noise allows); without them the only
    yardstick left is a gross misfit of the log gains (MISFIT_TRUST rms)."""
    prob = run.prob
    if not prob.ng:
        return {}
    if prob.sg is not None:
        misfit = _gof_channels(prob, run.theta, run.chi2, run.dof)
        if misfit:
            run.warns.append("the gains do not follow the circuit's model within the measured "
                             "noise (rms misfit " + ", ".join(
                                 f"{ch} {v:.1f}x the noise" for ch, v in misfit.items())
                             + "): a different circuit is on the bench (wiring, topology, "
                             "capacitors, ESR); the values are not to be used")
        far = _implausible_nuisances(prob, run.theta)
        if far:
            run.warns.append("the model fits only with implausible parts (" + "; ".join(far)
                             + "): a different circuit is on the bench (electrolytic "
                             "capacitors' ESR? a band-pass built otherwise?); the values are "
                             "not to be used")
            misfit.update({k: math.nan for k in far})
        return misfit
    misfit = {}
    if prob.nl or len(prob.prior_idx) or run.gain_rms * math.sqrt(
            prob.ng / _fewest_rows(prob.chg)) > MISFIT_TRUST:
        misfit = _misfit_channels(prob, run.theta)
    if misfit:
        run.warns.append("the gains do not follow the circuit's model (rms misfit "
                         + ", ".join(f"{ch} {100 * v:.0f}%" for ch, v in misfit.items())
                         + "): check the wiring (outputs swapped?), the circuit and the "
                         "capacitance; the values are not to be used")
    return misfit


def _implausible_nuisances(prob: _Problem, theta: np.ndarray) -> list[str]:
    """Nuisance parts the fit pushed beyond PRIOR_Z_LIMIT sigma of their priors."""
    out = []
    for j, k in enumerate(prob.prior_idx):
        name = prob.free[k]
        if name in prob.circ.resistors:
            continue  # a user's prior on a resistor is a wish, not a physical range
        z = (theta[k] - prob.prior_mu[j]) / prob.prior_sig[j]
        if abs(z) > PRIOR_Z_LIMIT:
            out.append(f"{name} {math.exp(theta[k]):.3g}, {abs(z):.0f} sigma from its "
                       f"prior {math.exp(prob.prior_mu[j]):.3g}")
    return out


def _gain_intervals(run: _Run, led_only: list, known: dict | None = None
                    ) -> tuple[dict, dict[str, str]]:
    """Jacobian intervals at the run's noise scale and quantile, with plain warnings.
    ``known``: every LED group's region (:func:`_fit_leds_consistent`); when those groups
    hold every parameter, their regions are every interval and no covariance is needed."""
    prob = run.prob
    ci: dict[int, tuple[float, float]] = {}
    ci_method: dict[str, str] = {}
    if known is not None and {k for ks, _ in led_only for k in ks} >= set(range(prob.npar)):
        return ci, ci_method
    A = run.A if run.A is not None else np.zeros((prob.npar, prob.npar))
    cov, info_warn = _covariance(prob, A[0] if A.ndim == 3 else A, led_only)
    run.warns += info_warn
    run.warns += _sensitivity_warnings(prob, run.theta, led_only, info_warn)
    for k in range(len(prob.free)):
        sd = math.sqrt(max(cov[k, k], 0.0)) if np.isfinite(cov[k, k]) else math.inf
        half = run.quantile * sd if math.isfinite(run.quantile) else math.inf
        ci[k] = (run.theta[k] - half, run.theta[k] + half)
        ci_method[prob.free[k]] = "jacobian"
    return ci, ci_method


def _led_intervals(run: _Run, led_only: list, ci: dict, ci_method: dict[str, str],
                   known: dict | None = None) -> tuple[int, list[str]]:
    """Data-consistent intervals for resistors only LED rows see; rejected-row counts.
    ``known``: per group, what :func:`_fit_leds_consistent` already computed."""
    prob = run.prob
    n_rej = 0
    led_misfit: list[str] = []
    neutral = _default_base(prob)
    for ks, chans in led_only:
        chn = ", ".join(prob.circ.channels[c] for c in sorted(chans))
        on = _on_channels(prob.chl, chans)
        if not on.any():
            for k in ks:
                ci[k] = (-math.inf, math.inf)
                ci_method[prob.free[k]] = "none"
                run.warns.append(f"{prob.free[k]}: no usable rows on channel {chn}: the data "
                                 "do not determine it; the value is a placeholder, not a fit")
            continue
        ivs, nr, msgs = (known[tuple(ks)] if known is not None else
                         _led_interval(prob, run.theta, ks, chans))
        n_rej += nr
        run.warns += msgs
        n_rows = int(on.sum())
        if nr > max(2, LED_MISFIT_FRACTION * n_rows):
            # a misread LED is rare and sits next to a switch; this many is another signal
            led_misfit.append(f"{chn}: {nr} of {n_rows}")
        for k, iv in ivs.items():
            ci[k] = iv
            ci_method[prob.free[k]] = "data-consistent"
            run.theta[k] = _inside(iv, run.theta[k], neutral[k])
    return n_rej, led_misfit


def _shared_threshold(run: _Run, data: MeasurementSet, led_only: list, ci: dict, n_rej: int,
                      capacitance: Any, prior: Any
                      ) -> tuple[tuple[float, float] | None, list[str]]:
    """An estimated threshold shared by every LED: its consistent range, the resistor
    intervals over that range, and LEDs that contradict sharing one."""
    prob, theta = run.prob, run.theta
    if not (prob.est_t and led_only and not prob.ng):
        return None, []
    t_ci, prof, t_open = _profile_threshold(prob, theta, led_only)
    for k, (lo, hi) in prof.items():
        ci[k] = (min(ci[k][0], lo), max(ci[k][1], hi))
    t_ci, builds = _over_nuisances(prob, theta, data, led_only, capacitance, prior,
                                    ci, t_ci)
    if builds:
        run.notes.append("the ranges also cover the parts LED states cannot pin, at their "
                         "tolerance's 95 % ends (" + "; ".join(builds) + ")")
    what = ("LED switching voltage (against each tone's reference amplitude) V_f = "
            f"{math.exp(theta[-1]):.4g} V" if prob.est_volts else
            f"LED threshold t_ref = {math.exp(theta[-1]):.4g} at 0 dBFS")
    run.notes.append(f"{what}, shared by every LED (consistent range "
                     f"{math.exp(t_ci[0]):.4g}..{math.exp(t_ci[1]):.4g}); resistor intervals "
                     "cover every threshold in that range. LEDs of different colors need one "
                     "threshold each (LED switching voltages low=V,band=V,high=V)")
    if t_open:
        run.warns.append("the LED threshold is not pinned down by the data (its consistent "
                         "range reaches the search limit); add switches at another tone level")
    conflicts = []
    if n_rej and len(led_only) > 1:
        conflicts = _threshold_conflicts(data, prob, theta, led_only, t_ci, capacitance, prior)
    if conflicts:
        run.warns.append("the LEDs do not switch at one common threshold ("
                         + "; ".join(conflicts) + f"; all together: {math.exp(t_ci[0]):.4g}.."
                         f"{math.exp(t_ci[1]):.4g}), so resistor values fitted with one "
                         "estimated threshold are wrong: give each LED's switching voltage "
                         "(low=V,band=V,high=V) or fit amplitudes too (mode both; a recorded "
                         "session with amplitudes: a fit with one LED threshold estimated per "
                         "LED)")
    return t_ci, conflicts
