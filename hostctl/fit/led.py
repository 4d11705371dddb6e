"""LED data: data-consistent intervals (exact vertices), threshold profiles."""

from __future__ import annotations

import math

import numpy as np

from hostctl.errors import FitError
from hostctl.fit.bisect import PROFILE_DEPTH, PROFILE_STEPS, _bisect_edges  # noqa: F401
from hostctl.fit.problem import _Problem, _subproblem
from hostctl.fit.settings import BOX, Z95
from hostctl.fit.starts import _grid_range
from hostctl.fit.vertices import _logh_dx, _numpy, _vertex_intervals  # noqa: F401

#: a measured reference amplitude's relative scatter (virtual bench seed 1: sd 7.9e-4, 234
#: rows vs ngspice): an estimated V_f's rows are each relaxed by its 95 % end (slack, log)
VIN_SLACK = Z95 * 8e-4


def _led_interval(prob: _Problem, theta: np.ndarray, ks: list[int], chans: set[int],
                  tau: float | None = None, accept_all: bool = False
                  ) -> tuple[dict[int, tuple[float, float]], int, list[str]]:
    """Exact consistent interval (log R) per resistor of one LED-only channel group.

    Which rows are accepted is decided at the estimate ``theta``; ``tau`` (log t_ref)
    evaluates the region at another threshold (profiling an estimated threshold). An
    empty region returns no intervals. See :func:`_vertex_intervals`. ``accept_all``:
    every row is accepted and ``theta`` is only where Newton starts (the region before
    any estimate: the engine's fast path for consistent data).
    """
    taus = None if tau is None else np.array([tau])
    reg = _led_regions(prob, theta, [(ks, chans)], taus, accept_all)[0]
    return _interval_of(prob, ks, chans, reg)


def _led_intervals_all(prob: _Problem, theta: np.ndarray, groups: list, accept_all: bool
                       ) -> list[tuple[dict[int, tuple[float, float]], int, list[str]]]:
    """:func:`_led_interval` of every group of ``groups`` at the estimate, in one batch."""
    regs = _led_regions(prob, theta, groups, None, accept_all)
    return [_interval_of(prob, ks, chans, reg) for (ks, chans), reg in zip(groups, regs,
                                                                           strict=True)]


def _interval_of(prob: _Problem, ks: list[int], chans: set[int], reg: tuple | None
                 ) -> tuple[dict[int, tuple[float, float]], int, list[str]]:
    """One group's region at one threshold as intervals, rejected rows and plain notes."""
    msgs: list[str] = []
    if len(ks) > 2 and np.isin(prob.chl, list(chans)).any():
        msgs.append("interval for more than two coupled resistors is not computed exactly")
    if reg is None:
        return {}, 0, msgs
    lo, hi, nrej, empty = reg
    if empty[0]:
        return {}, nrej, msgs
    out = {}
    for j, k in enumerate(ks):
        name = prob.free[k]
        if lo[0, j] == -math.inf:
            msgs.append(f"{name}: the LED data set no lower limit (no tone on that side of "
                        "its switch); the interval is open below and the value is only a "
                        "placeholder inside it")
        if hi[0, j] == math.inf:
            msgs.append(f"{name}: the LED data set no upper limit (no tone on that side of "
                        "its switch); the interval is open above and the value is only a "
                        "placeholder inside it")
        out[k] = (float(lo[0, j]), float(hi[0, j]))
    return out, nrej, msgs


def _led_regions(prob: _Problem, theta: np.ndarray, groups: list,
                 taus: np.ndarray | None, accept_all: bool = False
                 ) -> list[tuple[np.ndarray, np.ndarray, int, np.ndarray] | None]:
    """Each LED-only group's consistent region at each threshold of ``taus`` (log t_ref;
    None: at the estimate, which then lies inside it), every group in one batch (one
    "board" each, sharing the LED rows): per group lo, hi (T, q), rows rejected at the
    estimate, empty (T,). None for a group without rows or coupling more than two
    resistors (no exact region then)."""
    p_all = len(prob.free)
    out: list[tuple[np.ndarray, np.ndarray, int, np.ndarray] | None] = [None] * len(groups)
    on = [_on_channels(prob.chl, chans) for _, chans in groups]
    use = [g for g, (ks, _) in enumerate(groups) if len(ks) <= 2 and on[g].any()]
    if not use:
        return out
    rows = np.flatnonzero(np.any([on[g] for g in use], axis=0))   # these groups' rows
    t_hat = theta[p_all] if prob.est_t else prob.log_t
    # an estimated V_f: lit rows may sit VIN_SLACK below it, dark ones above
    lvl = (prob.lvl - prob.sgn * VIN_SLACK if prob.est_volts else prob.lvl)[rows]
    tt = np.array([t_hat]) if taus is None else np.asarray(taus, dtype=float)
    lt_reg = (tt[:, None] + lvl[None])[:, None]          # (T, 1, n)
    G, n = len(use), len(rows)
    q = max(len(groups[g][0]) for g in use)
    kb = np.zeros((G, q), np.int64)
    box_lo, box_hi = np.zeros((G, q)), np.zeros((G, q))
    for i, g in enumerate(use):
        ks = groups[g][0]
        pad = [k for k in range(p_all) if k not in ks][:q - len(ks)]   # held at theta
        kb[i] = ks + pad
        box_lo[i, :len(ks)], box_hi[i, :len(ks)] = _box(prob, theta, ks)
        box_lo[i, len(ks):] = box_hi[i, len(ks):] = theta[pad]

    def each(a: np.ndarray) -> np.ndarray:
        return np.broadcast_to(a[rows], (G, n))

    lo, hi, nrej, empty = _vertex_intervals(
        prob.model, np.repeat(theta[None, :p_all], G, 0), kb,
        _numpy(prob.omega)[prob.ng + rows][None], _numpy(prob.ch)[prob.ng + rows][None],
        each(prob.sgn), (t_hat + lvl)[None], lt_reg, np.stack([on[g][rows] for g in use]),
        each(prob.freq_l), each(prob.chl * 4096 + prob.groups()), box_lo, box_hi,
        include_hat=taus is None and not accept_all, accept_all=accept_all,
        qb=np.array([len(groups[g][0]) for g in use]))
    for i, g in enumerate(use):
        qg = len(groups[g][0])
        out[g] = (lo[:, i, :qg], hi[:, i, :qg], int(nrej[i]), empty[:, i])
    return out


def _on_channels(chl: np.ndarray, chans: set[int]) -> np.ndarray:
    """Which rows are on one of ``chans`` (a lookup table: ``np.isin`` sorts each time)."""
    hit = np.zeros(max(int(chl.max(initial=0)), *chans, 0) + 1, bool)
    hit[list(chans)] = True
    return hit[chl]


def _box(prob: _Problem, theta: np.ndarray, ks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Search box (log R) for LED intervals: the coarse grid's span and the estimate,
    widened by BOX; a bound on the box means the data leave that side open."""
    grids = [_grid_range(prob, k) for k in ks]
    lo = np.array([min(g[0], theta[k]) - BOX for g, k in zip(grids, ks, strict=True)])
    hi = np.array([max(g[-1], theta[k]) + BOX for g, k in zip(grids, ks, strict=True)])
    return lo, hi


def _inside(iv: tuple[float, float], th: float, neutral: float) -> float:
    """Where the estimate goes for an interval the data leave open on a side: one e-fold
    inside the finite end (the probit optimum would run off towards 0 or infinity)."""
    lo, hi = iv
    if math.isinf(lo) and math.isinf(hi):
        return neutral
    if math.isinf(lo):
        return max(min(th, hi), hi - 1.0)
    if math.isinf(hi):
        return min(max(th, lo), lo + 1.0)
    return th if lo <= th <= hi else 0.5 * (lo + hi)


def _profile_threshold(prob: _Problem, theta: np.ndarray, led_only: list
                       ) -> tuple[tuple[float, float], dict[int, tuple[float, float]], bool]:
    """Consistent range of log t_ref, and the resistor intervals over that whole range.

    The feasible thresholds form an interval around the estimate; its ends are found by
    bisection on "every group still has a consistent region", and the resistor
    intervals are the union of the exact intervals at 9 thresholds across it. Each batch
    of thresholds is one evaluation per group (:func:`_led_regions`); a threshold one group
    rules out is not tried on the next.
    """
    tau_hat = float(theta[-1])

    def ivs_at(ds: list[float]) -> list[dict[int, tuple[float, float]] | None]:
        taus = tau_hat + np.array(ds, dtype=float)
        ok = np.ones(len(taus), bool)
        per = []
        for group in led_only:
            idx = np.flatnonzero(ok)   # a threshold one group rules out is not tried further
            reg = _led_regions(prob, theta, [group], taus[idx])[0] if len(idx) else None
            if reg is None:
                return [None] * len(taus)
            lo, hi, _, empty = reg
            ok[idx[empty]] = False
            per.append((group[0], idx, lo, hi))
        out: list[dict[int, tuple[float, float]] | None] = []
        for t in range(len(taus)):
            if not ok[t]:
                out.append(None)
                continue
            iv: dict[int, tuple[float, float]] = {}
            for ks, idx, lo, hi in per:
                i = int(np.searchsorted(idx, t))
                iv.update({k: (float(lo[i, j]), float(hi[i, j])) for j, k in enumerate(ks)})
            out.append(iv)
        return out

    (lo_d, lo_open), (hi_d, hi_open) = _bisect_edges(
        lambda ds: [iv is not None for iv in ivs_at(ds)])
    union: dict[int, tuple[float, float]] = {}
    for iv in ivs_at([float(d) for d in np.linspace(lo_d, hi_d, 9)]):
        for k, (a, b) in (iv or {}).items():
            a0, b0 = union.get(k, (a, b))
            union[k] = (min(a0, a), max(b0, b))
    return (tau_hat + lo_d, tau_hat + hi_d), union, lo_open or hi_open


def _near_switch(prob: _Problem, th_b: np.ndarray, sigma: float) -> _Problem:
    """One board's problem keeping every gain row but only the LED rows within 40 sigma
    (+0.1) of their threshold for some start in ``th_b`` (see :func:`_active_rows`)."""
    p = len(prob.free)
    # LED rows only: the problem itself (its tones, which the model has seen) when it has
    # no gain rows
    sub = _subproblem(prob, prob.ng + np.arange(prob.nl)) if prob.ng else prob
    L, _ = sub.model.logh(th_b[:, :p], sub.omega, sub.ch, jac=False)
    logt = (th_b[:, p:p + 1] if prob.est_t else prob.log_t) + prob.lvl
    near = (np.abs(L - logt) < 40 * sigma + 0.1).any(0)
    return _subproblem(prob, np.concatenate([np.arange(prob.ng),
                                             prob.ng + np.flatnonzero(near)]))


def _active_rows(bp: _Problem, theta: np.ndarray, sigma: float) -> _Problem:
    """The batch restricted to LED rows within 40 sigma (+0.1) of their threshold.

    Farther rows add nothing at this noise scale (Phi(40) is 1 in float64, and a far
    misread row costs a constant -log eps), so fine stages only carry the rows near a
    switch; the margin of 0.1 covers how far a stage moves the estimate."""
    import torch

    p = len(bp.free)
    L, _ = bp.model.logh(theta[:, :p], bp.omega, bp.ch, jac=False)
    active = (bp.wt > 0) & (np.abs(L - bp.log_t) < 40 * sigma + 0.1)
    m = max(1, int(active.sum(1).max()))
    order = np.argsort(~active, axis=1, kind="stable")[:, :m]

    def take(a: np.ndarray) -> np.ndarray:
        return np.take_along_axis(a, order, 1)

    ch = take(bp.chl)
    return _Problem(bp.circ, bp.caps, bp.free, bp.fixed, bp.model,
                    torch.from_numpy(take(bp.omega.numpy())), torch.from_numpy(ch), 0, m,
                    bp.logg, take(bp.sgn), take(bp.lvl), bp.log_t, False, bp.prior_idx,
                    bp.prior_mu, bp.prior_sig, bp.freq_g, take(bp.freq_l), bp.chg, ch, [],
                    take(active).astype(float))


def _thresholds_per_led(prob: _Problem, theta: np.ndarray
                        ) -> tuple[dict[str, tuple[float, float]], dict[str, tuple[int, int]]]:
    """Each LED's own threshold range (at 0 dBFS) where gains have fixed the response, and
    per LED (rows that range misclassifies, rows).

    With |H| known at every LED row the threshold lies in the gap between dark and lit
    rows of ``log|H| + level``: the gap misclassifying fewest rows. Different LEDs (red,
    green, blue) have disjoint gaps; a shared estimate would only be their compromise.
    """
    p = len(prob.free)
    L, _ = prob.model.logh(theta[None, :p], prob.omega[prob.ng:], prob.ch[prob.ng:], jac=False)
    x = L[0] - prob.lvl                       # lit iff log t_ref < x
    slack = _vin_slack(prob)
    out, wrong_rows = {}, {}
    for c in sorted(set(prob.chl.tolist())):
        sel = prob.chl == c
        order = np.argsort(x[sel])
        xs, lit, ws = x[sel][order], prob.sgn[sel][order] > 0, slack[sel][order]
        # cut before position i: lit rows below it and dark rows from it on are wrong
        wrong = np.concatenate([[0], np.cumsum(lit)]) + np.concatenate(
            [np.cumsum((~lit)[::-1])[::-1], [0]])
        i = int(np.argmin(wrong))
        # each row's x carries its reference reading's error: the range's ends move out
        lo = float(math.exp(np.max(xs[:i] - ws[:i]))) if i > 0 else 0.0   # always lit: open
        hi = float(math.exp(np.min(xs[i:] + ws[i:]))) if i < len(xs) else math.inf
        out[prob.circ.channels[c]] = (lo, hi)
        wrong_rows[prob.circ.channels[c]] = (int(wrong[i]), len(xs))
    return out, wrong_rows


def _vin_slack(prob: _Problem) -> np.ndarray:
    """Per LED row, the 95 % end of its reference amplitude's error (log) when its threshold
    is judged on volts against that tone's own reference reading: the gain rows' measured
    noise at the same tone (it holds the reference's, and the phase cover's of a short
    window near the probe's rate: 0.5 % seen at 5.5 kHz in 100 ms), at least VIN_SLACK."""
    slack = np.zeros(prob.nl)
    if not prob.est_volts:
        return slack
    slack[:] = VIN_SLACK
    if prob.sg is not None and prob.grid is None:
        se = {(float(f), int(c)): float(s)
              for f, c, s in zip(prob.freq_g, prob.chg, prob.sg, strict=True)}
        got = np.array([se.get((float(f), int(c)), 0.0)
                        for f, c in zip(prob.freq_l, prob.chl, strict=True)])
        slack = np.maximum(slack, Z95 * got)
    return slack


def _check_threshold_identifiable(prob: _Problem, gain_ch: set[int]) -> None:
    led_ch = set(prob.chl.tolist())
    if led_ch <= gain_ch:
        return  # gain rows fix the resistors: one level suffices
    best = 0  # a channel must switch at two levels: one level only fixes R * f(t)
    for c in led_ch:
        levels = set()
        grp = prob.groups()   # tone levels (on volts each row has its own offset)
        for lv in np.unique(grp[prob.chl == c]):
            sel = (prob.chl == c) & (grp == lv)
            y = prob.sgn[sel][np.argsort(prob.freq_l[sel])]
            if (y[1:] != y[:-1]).any():
                levels.add(int(lv))
        best = max(best, len(levels))
    if best < 2:
        raise FitError("cannot estimate the LED threshold: some channel's LED must switch at "
                       f"two or more tone levels (found {best}), or gain data must cover the "
                       "LED channels; give {led_threshold} a number instead"
                       ).naming(led_threshold="the LED threshold")

