"""Many boards at once: a batch dimension through the model and the LM."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.circuits import LED_THRESHOLD, Circuit, capacitances, get_circuit
from hostctl.dataset import MeasurementSet
from hostctl.fit.batchwork import covariances, linear_starts, sensitivity_warnings
from hostctl.fit.engine import _result, fit
from hostctl.fit.led import _active_rows, _box, _inside, _vertex_intervals
from hostctl.fit.lm import _lm
from hostctl.fit.problem import _build, _Problem, nuisances
from hostctl.fit.result import FitResult
from hostctl.fit.rows import row_kinds
from hostctl.fit.settings import LED_LAPSE, MISFIT_RMS, SIGMA_SCHEDULE
from hostctl.fit.starts import _default_base, _grid_range, _groups, _switch_rows

if TYPE_CHECKING:
    pass


#: gain boards fitted as one batch (more go in blocks of this many)
BOARDS_PER_BLOCK = 2048


def fit_many(datasets: Sequence[MeasurementSet], circuit: Circuit | str, *,
             capacitance: Any = 1e-6,
             led_threshold: float | Mapping[str, float] | str = LED_THRESHOLD,
             **kw: Any) -> list[FitResult]:
    """Fit many boards (same circuit) at once: a batch dimension through the model and a
    block-diagonal LM. Gain-only boards and LED-only boards (fixed threshold) are
    batched; priors, fixed values, an estimated threshold or boards with both kinds of
    rows go through :func:`fit` one by one."""
    import torch

    from hostctl.ledrule import as_rule, engine_form

    led_threshold = engine_form(as_rule(led_threshold))   # converted once, here
    circ = get_circuit(circuit) if isinstance(circuit, str) else circuit
    caps = capacitances(circ, capacitance)
    t0 = time.perf_counter()
    has_gain, has_led = (list(x) for x in zip(*map(row_kinds, datasets), strict=True)) \
        if datasets else ([], [])
    # nuisances (ESR priors) and the rest go through fit() one by one
    one_by_one = (kw or not datasets or bool(nuisances(circ)) or led_threshold == "estimate"
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
    try:   # a block of boards at a time: memory stays that of one block (each board's
        # LM is its own, so blocks give the same answers as one batch)
        out: list[FitResult] = []
        for a in range(0, len(datasets), BOARDS_PER_BLOCK):
            out += _fit_many_gain(datasets[a:a + BOARDS_PER_BLOCK], circ, caps, capacitance,
                                  t0 if a == 0 else time.perf_counter())
        return out
    finally:
        torch.set_num_threads(nthreads)


def _fit_many_gain(datasets: Sequence[MeasurementSet], circ: Circuit, caps: dict[str, float],
                   capacitance: Any, t0: float) -> list[FitResult]:
    """Gain-only boards: one batched LM; a board it does not settle goes through fit()."""
    import torch

    from hostctl.fit.special import student_t_ppf

    probs = [_build(d, circ, caps, LED_THRESHOLD, None, None) for d in datasets]
    B = len(probs)
    n = max(pr.ng for pr in probs)
    p = len(probs[0].free)
    om = np.ones((B, n))
    ch = np.zeros((B, n), dtype=np.int64)
    lg = np.zeros((B, n))
    wt = np.zeros((B, n))
    for b, pr in enumerate(probs):
        m = pr.ng
        om[b, :m] = pr.omega.numpy()
        ch[b, :m] = pr.ch.numpy()
        lg[b, :m] = pr.logg
        wt[b, :m] = 1.0
    th0 = linear_starts(probs, om, ch, lg, wt)
    model = probs[0].model
    omt, cht = torch.from_numpy(om), torch.from_numpy(ch)

    def fun(th):
        L, JL = model.logh(th, omt, cht, jac=True)
        r = (L - lg) * wt            # padded rows weigh nothing
        J = JL * wt[..., None]
        Jt = J.transpose(0, 2, 1)
        return 0.5 * np.einsum("bn,bn->b", r, r), (Jt @ r[..., None])[..., 0], Jt @ J

    theta, cost, A, done, it = _lm(fun, th0)
    ms = np.array([pr.ng for pr in probs])
    rms = np.sqrt(2 * cost / np.maximum(ms, 1))
    dof = ms - (np.einsum("bpp->bp", A) > 1e-16 * np.maximum(1, ms)[:, None]).sum(1)
    s = np.sqrt(np.maximum(2 * cost / np.maximum(dof, 1), 1e-24))
    # boards whose linear start missed, with no spare rows, or with the probe's noise
    # figures: the single-board path (multi-start; it says why)
    alone = (rms > MISFIT_RMS) | ~done | (dof <= 0) | np.array([pr.noise_known
                                                                for pr in probs])
    cov, warns = covariances(probs, A / s[:, None, None] ** 2)
    _, J = model.logh(theta, omt, cht, jac=True)
    sens = sensitivity_warnings(probs, theta, J, wt, warns)
    # Student-t: the noise comes from the residuals (one quantile per distinct dof)
    dofs, inv = np.unique(np.maximum(dof, 1), return_inverse=True)
    q = np.array([student_t_ppf(0.975, float(d)) for d in dofs])[inv.ravel()]
    sd = np.sqrt(np.where(np.isfinite(np.einsum("bpp->bp", cov)),
                          np.maximum(np.einsum("bpp->bp", cov), 0.0), np.inf))
    lo, hi = theta - q[:, None] * sd, theta + q[:, None] * sd
    secs = time.perf_counter() - t0
    out = []
    for b, pr in enumerate(probs):
        if alone[b]:
            out.append(fit(datasets[b], circ, capacitance=capacitance))
            continue
        ci = {k: (lo[b, k], hi[b, k]) for k in range(p)}
        res = _result(pr, theta[b], ci, {k: "jacobian" for k in pr.free}, bool(done[b]),
                      it, t0, "gauss-newton", "auto",
                      list(pr.warnings) + warns[b] + sens[b], [])
        res.seconds = secs / B
        out.append(res)
    model.forget()   # the model is shared (hostctl.fit.model.shared_model): not the batch's arrays
    return out


@dataclass
class _LedBatch:
    """LED-only boards padded to one array shape (``wt`` 0 on padding)."""

    probs: list[_Problem]
    bp: _Problem
    om: np.ndarray
    ch: np.ndarray
    sgn: np.ndarray
    wt: np.ndarray
    fr: np.ndarray


def _led_batch(probs: list[_Problem], circ: Circuit, caps: dict[str, float]) -> _LedBatch:
    import torch

    p0 = probs[0]
    B, n = len(probs), max(pr.nl for pr in probs)
    om, sgn, fr = np.ones((B, n)), np.ones((B, n)), np.ones((B, n))
    ch = np.zeros((B, n), dtype=np.int64)
    wt = np.zeros((B, n))
    for b, pr in enumerate(probs):
        m = pr.nl
        om[b, :m], ch[b, :m], sgn[b, :m] = pr.omega.numpy(), pr.ch.numpy(), pr.sgn
        wt[b, :m], fr[b, :m] = 1.0, pr.freq_l
    bp = _Problem(circ, caps, p0.free, {}, p0.model, torch.from_numpy(om),
                  torch.from_numpy(ch), 0, n, np.zeros(0), sgn, np.zeros((B, n)), p0.log_t,
                  False, np.zeros(0, dtype=int), np.zeros(0), np.zeros(0), np.zeros(0), fr,
                  np.zeros(0, dtype=int), ch, [], wt)
    return _LedBatch(probs, bp, om, ch, sgn, wt, fr)


def _fit_many_led(datasets: Sequence[MeasurementSet], circ: Circuit, caps: dict[str, float],
                  capacitance: Any, led_threshold: float, t0: float) -> list[FitResult]:
    """LED-only boards in one batch: coarse grid on the tones next to each switch, the
    annealed probit LM over all boards at once, and the vertex intervals of every board
    in one Newton batch. A board the batch cannot settle cleanly (a misread LED, a
    channel with no rows) is refitted alone by :func:`fit`, which has the multi-start."""
    probs = [_build(d, circ, caps, led_threshold, None, None) for d in datasets]
    groups = _groups(probs[0])
    if any(len(ks) > 2 for ks, _ in groups):
        return [fit(d, circ, capacitance=capacitance, led_threshold=led_threshold)
                for d in datasets]
    lb = _led_batch(probs, circ, caps)
    theta, no_rows = _led_batch_starts(lb, groups)
    theta, done, iters = _led_batch_anneal(lb, theta)
    lo, hi, nrej, empty = _led_batch_intervals(lb, groups, theta)
    secs = time.perf_counter() - t0
    out: list[FitResult] = []
    for b, pr in enumerate(probs):
        if nrej[b] or empty[b] or no_rows[b] or not done[b]:
            out.append(fit(datasets[b], circ, capacitance=capacitance,
                           led_threshold=led_threshold))
            continue
        res = _led_board_result(pr, theta[b], lo[b], hi[b], iters, t0)
        res.seconds = secs / len(probs)
        out.append(res)
    return out


def _led_batch_starts(lb: _LedBatch, groups: list) -> tuple[np.ndarray, np.ndarray]:
    """Per group, the best cell of a coarse grid judged on the tones next to a switch."""
    import torch

    from hostctl.fit.special import log_ndtr

    p0, B = lb.probs[0], len(lb.probs)
    model, log_t = p0.model, p0.log_t
    theta = np.repeat(_default_base(p0)[None], B, 0)
    no_rows = np.zeros(B, bool)
    for ks, chans in groups:
        idx_l = []
        for pr in lb.probs:
            rows = np.flatnonzero(np.isin(pr.chl, list(chans)))
            if len(rows):
                ends = [rows[np.argmin(pr.freq_l[rows])], rows[np.argmax(pr.freq_l[rows])]]
                rows = np.unique(np.concatenate([_switch_rows(pr, chans), ends]).astype(np.int64))
            idx_l.append(rows)
        no_rows |= np.array([len(i) == 0 for i in idx_l])
        m = max(1, max(len(i) for i in idx_l))
        idx = np.zeros((B, m), dtype=np.int64)
        msk = np.zeros((B, m))
        for b, i in enumerate(idx_l):
            idx[b, :len(i)], msk[b, :len(i)] = i, 1.0
        axes = [_grid_range(p0, k) for k in ks]
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(ks))
        M = len(mesh)
        chunk = max(1, 200_000 // (M * m))
        for c0 in range(0, B, chunk):
            bs = np.arange(c0, min(B, c0 + chunk))
            th = np.repeat(theta[bs], M, 0)
            th[:, ks] = np.tile(mesh, (len(bs), 1))
            L, _ = model.logh(th, torch.from_numpy(np.repeat(lb.om[bs[:, None], idx[bs]], M, 0)),
                              torch.from_numpy(np.repeat(lb.ch[bs[:, None], idx[bs]], M, 0)),
                              jac=False)
            z = np.repeat(lb.sgn[bs[:, None], idx[bs]], M, 0) * (L - log_t) / SIGMA_SCHEDULE[0]
            cost = -(log_ndtr(z) * np.repeat(msk[bs], M, 0)).sum(1).reshape(len(bs), M)
            best = mesh[np.argmin(cost, 1)]
            for j, k in enumerate(ks):
                theta[bs, k] = best[:, j]
    return theta, no_rows


def _led_batch_anneal(lb: _LedBatch, theta: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """The annealed probit, every board at once."""
    iters = 0
    done = np.zeros(len(theta), bool)
    for si, sigma in enumerate(SIGMA_SCHEDULE):
        last = si == len(SIGMA_SCHEDULE) - 1
        sp = lb.bp if si < 2 else _active_rows(lb.bp, theta, sigma)

        def fun(th, sigma=sigma, lapse=0.0 if si == 0 else LED_LAPSE, sp=sp):
            return sp.objective(th, sigma=sigma, lapse=lapse)

        theta, _, _, done, it = _lm(fun, theta, max_iter=40 if last else 25,
                                    xtol=1e-8 if last else 1e-4,
                                    ftol=1e-12 if last else 1e-8)
        iters += it
    return theta, done, iters


def _led_batch_intervals(lb: _LedBatch, groups: list, theta: np.ndarray
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The data-consistent intervals of every board (lo, hi, rejected rows, empty)."""
    p0, (B, n) = lb.probs[0], lb.om.shape
    p = len(p0.free)
    lo_all, hi_all = np.full((B, p), math.nan), np.full((B, p), math.nan)
    nrej = np.zeros(B, dtype=int)
    empty = np.zeros(B, bool)
    lt = np.full((B, n), p0.log_t)
    for ks, chans in groups:
        valid = (lb.wt > 0) & np.isin(lb.ch, list(chans))
        boxes = [_box(p0, theta[b], ks) for b in range(B)]
        box_lo = np.array([bx[0] for bx in boxes])
        box_hi = np.array([bx[1] for bx in boxes])
        lo, hi, nr, em = _vertex_intervals(p0.model, theta[:, :p], ks, lb.bp.omega,
                                           lb.bp.ch, lb.sgn, lt, lt, valid, lb.fr, lb.ch,
                                           box_lo, box_hi, include_hat=True)
        lo_all[:, ks], hi_all[:, ks] = lo, hi
        nrej += nr
        empty |= em
    return lo_all, hi_all, nrej, empty


def _led_board_result(pr: _Problem, theta: np.ndarray, lo: np.ndarray, hi: np.ndarray,
                      iters: int, t0: float) -> FitResult:
    """One board's result from the batch: open sides said plainly, estimates inside."""
    warns = list(pr.warnings)
    for k, name in enumerate(pr.free):
        if lo[k] == -math.inf:
            warns.append(f"{name}: the LED data set no lower limit (no tone on that side "
                         "of its switch); the interval is open below")
        if hi[k] == math.inf:
            warns.append(f"{name}: the LED data set no upper limit (no tone on that side "
                         "of its switch); the interval is open above")
    ci = {k: (lo[k], hi[k]) for k in range(len(pr.free))}
    theta = theta.copy()
    for k in range(len(pr.free)):
        theta[k] = _inside(ci[k], theta[k], _default_base(pr)[k])
    notes = [f"{', '.join(pr.free)}: the 95% interval is the data-consistent interval: every "
             "value in it reproduces all accepted LED observations (exact, not statistical)"]
    return _result(pr, theta, ci, {k: "data-consistent" for k in pr.free}, True, iters,
                   t0, "led-interval", "auto", warns, notes)

