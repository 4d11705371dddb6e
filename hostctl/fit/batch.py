"""Many boards at once: a batch dimension through the model and the LM."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.circuits import LED_THRESHOLD, Circuit, capacitances, get_circuit
from hostctl.fit.engine import _result, fit
from hostctl.fit.intervals import _covariance, _n_informed, _sensitivity_warnings
from hostctl.fit.led import _active_rows, _box, _inside, _vertex_intervals
from hostctl.fit.lm import _lm
from hostctl.fit.problem import _build, _Problem, _usable
from hostctl.fit.result import FitResult
from hostctl.fit.settings import LED_LAPSE, MISFIT_RMS, SIGMA_SCHEDULE
from hostctl.fit.starts import _default_base, _grid_range, _groups, _linear_start, _switch_rows
from hostctl.measurements import MeasurementSet

if TYPE_CHECKING:
    pass


def fit_many(datasets: Sequence[MeasurementSet], circuit: Circuit | str, *,
             capacitance: Any = 1e-6,
             led_threshold: float | Mapping[str, float] | str = LED_THRESHOLD,
             **kw: Any) -> list[FitResult]:
    """Fit many boards (same circuit) at once: a batch dimension through the model and a
    block-diagonal LM. Gain-only boards and LED-only boards (fixed threshold) are
    batched; priors, fixed values, an estimated threshold or boards with both kinds of
    rows go through :func:`fit` one by one."""
    import torch
    from scipy.special import stdtrit

    circ = get_circuit(circuit) if isinstance(circuit, str) else circuit
    caps = capacitances(circ, capacitance)
    t0 = time.perf_counter()
    has_led = [any(_usable(m, "led") for m in d.rows) for d in datasets]
    has_gain = [any(_usable(m, "gain") for m in d.rows) for d in datasets]
    one_by_one = (kw or not datasets or led_threshold == "estimate"
                  or isinstance(led_threshold, Mapping)
                  or any(g and led for g, led in zip(has_gain, has_led, strict=True)))
    if one_by_one:
        return [fit(d, circ, capacitance=capacitance, led_threshold=led_threshold, **kw)
                for d in datasets]
    if any(has_led):
        if not all(has_led):
            out = [None] * len(datasets)
            gi = [i for i, h in enumerate(has_led) if not h]
            li = [i for i, h in enumerate(has_led) if h]
            for i, r in zip(gi, fit_many([datasets[i] for i in gi], circ,
                                         capacitance=capacitance), strict=True):
                out[i] = r
            for i, r in zip(li, fit_many([datasets[i] for i in li], circ,
                                         capacitance=capacitance,
                                         led_threshold=led_threshold), strict=True):
                out[i] = r
            return out  # type: ignore[return-value]
        nthreads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return _fit_many_led(datasets, circ, caps, capacitance, float(led_threshold), t0)
        finally:
            torch.set_num_threads(nthreads)
    nthreads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        probs = [_build(d, circ, caps, LED_THRESHOLD, None, None) for d in datasets]
        B = len(probs)
        n = max(pr.ng for pr in probs)
        p = len(probs[0].free)
        om = np.ones((B, n))
        ch = np.zeros((B, n), dtype=np.int64)
        lg = np.zeros((B, n))
        wt = np.zeros((B, n))
        th0 = np.zeros((B, p))
        for b, pr in enumerate(probs):
            m = pr.ng
            om[b, :m] = pr.omega.numpy()
            ch[b, :m] = pr.ch.numpy()
            lg[b, :m] = pr.logg
            wt[b, :m] = 1.0
            th = _default_base(pr)
            for k, v in _linear_start(pr).items():
                th[k] = v
            th0[b] = th
        model = probs[0].model
        omt, cht = torch.from_numpy(om), torch.from_numpy(ch)

        def fun(th):
            L, JL = model.logh(th, omt, cht, jac=True)
            r = (L - lg) * wt            # padded rows weigh nothing
            J = JL * wt[..., None]
            Jt = J.transpose(0, 2, 1)
            return 0.5 * np.einsum("bn,bn->b", r, r), (Jt @ r[..., None])[..., 0], Jt @ J

        theta, cost, A, done, it = _lm(fun, th0)
        # boards whose linear start missed: the single-board path (with multi-start)
        out = []
        secs = time.perf_counter() - t0
        for b, pr in enumerate(probs):
            m = pr.ng
            rms = math.sqrt(2 * cost[b] / max(m, 1))
            if rms > MISFIT_RMS or not done[b]:
                out.append(fit(datasets[b], circ, capacitance=capacitance))
                continue
            dof = m - _n_informed(A[b], m)
            if dof <= 0 or pr.noise_known:  # the single-board path says why
                out.append(fit(datasets[b], circ, capacitance=capacitance))
                continue
            s = max(math.sqrt(2 * cost[b] / dof), 1e-12)
            q = float(stdtrit(dof, 0.975))  # Student-t: the noise comes from the residuals
            cov, warns = _covariance(pr, A[b] / s ** 2, [])
            ci = {}
            for k in range(p):
                sd = math.sqrt(max(cov[k, k], 0.0)) if np.isfinite(cov[k, k]) else math.inf
                ci[k] = (theta[b, k] - q * sd, theta[b, k] + q * sd)
            warns += _sensitivity_warnings(pr, theta[b], [], warns)
            res = _result(pr, theta[b], ci, {k: "jacobian" for k in pr.free}, bool(done[b]),
                          it, t0, "gauss-newton", "auto", list(pr.warnings) + warns, [])
            res.seconds = secs / B
            out.append(res)
        return out
    finally:
        torch.set_num_threads(nthreads)


def _fit_many_led(datasets: Sequence[MeasurementSet], circ: Circuit, caps: dict[str, float],
                  capacitance: Any, led_threshold: float, t0: float) -> list[FitResult]:
    """LED-only boards in one batch: coarse grid on the tones next to each switch, the
    annealed probit LM over all boards at once, and the vertex intervals of every board
    in one Newton batch. A board the batch cannot settle cleanly (a misread LED, a
    channel with no rows) is refitted alone by :func:`fit`, which has the multi-start."""
    import torch
    from scipy.special import log_ndtr

    probs = [_build(d, circ, caps, led_threshold, None, None) for d in datasets]
    p0 = probs[0]
    groups = _groups(p0)
    if any(len(ks) > 2 for ks, _ in groups):
        return [fit(d, circ, capacitance=capacitance, led_threshold=led_threshold)
                for d in datasets]
    B = len(probs)
    n = max(pr.nl for pr in probs)
    p = len(p0.free)
    om = np.ones((B, n))
    ch = np.zeros((B, n), dtype=np.int64)
    sgn = np.ones((B, n))
    wt = np.zeros((B, n))
    fr = np.ones((B, n))
    for b, pr in enumerate(probs):
        m = pr.nl
        om[b, :m] = pr.omega.numpy()
        ch[b, :m] = pr.ch.numpy()
        sgn[b, :m] = pr.sgn
        wt[b, :m] = 1.0
        fr[b, :m] = pr.freq_l
    omt, cht = torch.from_numpy(om), torch.from_numpy(ch)
    bp = _Problem(circ, caps, p0.free, {}, p0.model, omt, cht, 0, n, np.zeros(0), sgn,
                  np.zeros((B, n)), p0.log_t, False, np.zeros(0, dtype=int), np.zeros(0),
                  np.zeros(0), np.zeros(0), fr, np.zeros(0, dtype=int), ch, [], wt)
    model, log_t = p0.model, p0.log_t
    # 1) starts: per group, the best cell of a coarse grid judged on the switch tones
    theta = np.repeat(_default_base(p0)[None], B, 0)
    no_rows = np.zeros(B, bool)
    for ks, chans in groups:
        idx_l = []
        for pr in probs:
            rows = np.flatnonzero(np.isin(pr.chl, list(chans)))
            if not len(rows):
                idx_l.append(rows)
                continue
            sw = _switch_rows(pr, chans)
            ends = [rows[np.argmin(pr.freq_l[rows])], rows[np.argmax(pr.freq_l[rows])]]
            idx_l.append(np.unique(np.concatenate([sw, ends]).astype(np.int64)))
        no_rows |= np.array([len(i) == 0 for i in idx_l])
        m = max(1, max(len(i) for i in idx_l))
        idx = np.zeros((B, m), dtype=np.int64)
        msk = np.zeros((B, m))
        for b, i in enumerate(idx_l):
            idx[b, :len(i)] = i
            msk[b, :len(i)] = 1.0
        axes = [_grid_range(p0, k) for k in ks]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(ks))
        M = len(mesh)
        chunk = max(1, 200_000 // (M * m))
        for c0 in range(0, B, chunk):
            bs = np.arange(c0, min(B, c0 + chunk))
            th = np.repeat(theta[bs], M, 0)
            th[:, ks] = np.tile(mesh, (len(bs), 1))
            rows_o = om[bs[:, None], idx[bs]]
            rows_c = ch[bs[:, None], idx[bs]]
            L, _ = model.logh(th, torch.from_numpy(np.repeat(rows_o, M, 0)),
                              torch.from_numpy(np.repeat(rows_c, M, 0)), jac=False)
            z = np.repeat(sgn[bs[:, None], idx[bs]], M, 0) * (L - log_t) / SIGMA_SCHEDULE[0]
            cost = -(log_ndtr(z) * np.repeat(msk[bs], M, 0)).sum(1).reshape(len(bs), M)
            best = mesh[np.argmin(cost, 1)]
            for j, k in enumerate(ks):
                theta[bs, k] = best[:, j]
    # 2) the annealed probit, every board at once
    iters = 0
    done = np.zeros(B, bool)
    for si, sigma in enumerate(SIGMA_SCHEDULE):
        last = si == len(SIGMA_SCHEDULE) - 1
        sp = bp if si < 2 else _active_rows(bp, theta, sigma)

        def fun(th, sigma=sigma, lapse=0.0 if si == 0 else LED_LAPSE, sp=sp):
            return sp.objective(th, sigma=sigma, lapse=lapse)

        theta, _, _, done, it = _lm(fun, theta, max_iter=40 if last else 25,
                                    xtol=1e-8 if last else 1e-4,
                                    ftol=1e-12 if last else 1e-8)
        iters += it
    # 3) the data-consistent intervals of every board
    lo_all = np.full((B, p), math.nan)
    hi_all = np.full((B, p), math.nan)
    nrej = np.zeros(B, dtype=int)
    empty = np.zeros(B, bool)
    lt = np.full((B, n), log_t)
    for ks, chans in groups:
        valid = (wt > 0) & np.isin(ch, list(chans))
        boxes = [_box(p0, theta[b], ks) for b in range(B)]
        box_lo = np.array([bx[0] for bx in boxes])
        box_hi = np.array([bx[1] for bx in boxes])
        lo, hi, nr, em = _vertex_intervals(model, theta[:, :p], ks, omt, cht, sgn, lt, lt,
                                           valid, fr, ch, box_lo, box_hi, include_hat=True)
        lo_all[:, ks], hi_all[:, ks] = lo, hi
        nrej += nr
        empty |= em
    secs = time.perf_counter() - t0
    out: list[FitResult] = []
    names = ", ".join(p0.free)
    for b, pr in enumerate(probs):
        if nrej[b] or empty[b] or no_rows[b] or not done[b]:
            out.append(fit(datasets[b], circ, capacitance=capacitance,
                           led_threshold=led_threshold))
            continue
        warns = list(pr.warnings)
        for k, name in enumerate(pr.free):
            if lo_all[b, k] == -math.inf:
                warns.append(f"{name}: the LED data set no lower limit (no tone on that side "
                             "of its switch); the interval is open below")
            if hi_all[b, k] == math.inf:
                warns.append(f"{name}: the LED data set no upper limit (no tone on that side "
                             "of its switch); the interval is open above")
        ci = {k: (lo_all[b, k], hi_all[b, k]) for k in range(p)}
        for k in range(p):
            theta[b, k] = _inside(ci[k], theta[b, k], _default_base(pr)[k])
        notes = [f"{names}: the 95% interval is the data-consistent interval: every value in "
                 "it reproduces all accepted LED observations (exact, not statistical)"]
        res = _result(pr, theta[b], ci, {k: "data-consistent" for k in pr.free}, True, iters,
                      t0, "led-interval", "auto", warns, notes)
        res.seconds = secs / B
        out.append(res)
    return out

