"""LED data: data-consistent intervals (exact vertices), threshold profiles."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.errors import FitError
from hostctl.fit.model import _Model
from hostctl.fit.problem import _Problem, _subproblem
from hostctl.fit.settings import BOX
from hostctl.fit.starts import _grid_range

if TYPE_CHECKING:
    pass


def _led_interval(prob: _Problem, theta: np.ndarray, ks: list[int], chans: set[int],
                  tau: float | None = None
                  ) -> tuple[dict[int, tuple[float, float]], int, list[str]]:
    """Exact consistent interval (log R) per resistor of one LED-only channel group.

    Which rows are accepted is decided at the estimate ``theta``; ``tau`` (log t_ref)
    evaluates the region at another threshold (profiling an estimated threshold). An
    empty region returns no intervals. See :func:`_vertex_intervals`.
    """
    p_all = len(prob.free)
    msgs: list[str] = []
    rows = np.flatnonzero(np.isin(prob.chl, list(chans)))
    if not len(rows):
        return {}, 0, msgs
    if len(ks) > 2:
        msgs.append("interval for more than two coupled resistors is not computed exactly")
        return {}, 0, msgs
    sub = _subproblem(prob, rows + prob.ng)
    t_hat = theta[p_all] if prob.est_t else prob.log_t
    lt_acc = (t_hat + sub.lvl)[None]
    lt_reg = ((t_hat if tau is None else tau) + sub.lvl)[None]
    key = sub.chl * 4096 + sub.groups()
    box_lo, box_hi = _box(prob, theta, ks)
    lo, hi, nrej, empty = _vertex_intervals(
        sub.model, theta[None, :p_all], ks, sub.omega[None], sub.ch[None], sub.sgn[None],
        lt_acc, lt_reg, np.ones((1, len(rows)), bool), sub.freq_l[None], key[None],
        box_lo[None], box_hi[None], include_hat=tau is None)
    if empty[0]:
        return {}, int(nrej[0]), msgs
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
    return out, int(nrej[0]), msgs


def _box(prob: _Problem, theta: np.ndarray, ks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Search box (log R) for LED intervals: the coarse grid's span and the estimate,
    widened by BOX; a bound on the box means the data leave that side open."""
    lo = np.array([min(_grid_range(prob, k)[0], theta[k]) - BOX for k in ks])
    hi = np.array([max(_grid_range(prob, k)[-1], theta[k]) + BOX for k in ks])
    return lo, hi


def _vertex_intervals(model: _Model, th: np.ndarray, ks: list[int], om: Any, ch: Any,
                      sgn: np.ndarray, lt_acc: np.ndarray, lt_reg: np.ndarray,
                      valid: np.ndarray, freq: np.ndarray, key: np.ndarray,
                      box_lo: np.ndarray, box_hi: np.ndarray, include_hat: bool = True
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Consistent intervals of resistors ``ks`` for B boards at once (rows padded).

    Region = {theta : sign_i (log|H_i| - log t_i) >= 0 for accepted rows}, rows accepted
    at the estimate ``th`` (B, p). For one or two free resistors its projections are
    attained at vertices: points where ``q`` binding constraints hold with equality --
    tones next to an LED switch (per ``key`` = channel and level), or the faces of the
    search box ``box_lo..box_hi`` (B, q). Each candidate system is solved by Newton's
    method (all boards' systems in one batch), and a vertex counts only if it
    reproduces every accepted observation of its board.

    Returns lo, hi (B, q) in log ohm (-inf / inf where the region reaches the box), the
    number of rejected rows per board, and which boards have an empty region.
    """
    B, n = sgn.shape
    q = len(ks)
    L, _ = model.logh(th, om, ch, jac=False)
    acc = valid & (sgn * (L - lt_acc) >= -1e-12)
    nrej = (valid & ~acc).sum(1)
    sys_b, sys_c = _vertex_systems(acc, sgn, freq, key, box_lo, box_hi, q)
    lo = np.full((B, q), math.inf)
    hi = np.full((B, q), -math.inf)
    if sys_b:
        sb = np.array(sys_b)
        x, ok = _solve_vertices(model, th, ks, om, ch, lt_reg, sb, sys_c, box_lo, box_hi)
        blo, bhi = box_lo[sb], box_hi[sb]
        good = np.flatnonzero(ok & ((x >= blo - 1e-9) & (x <= bhi + 1e-9)).all(1))
        vi = good[_feasible(model, th, ks, om, ch, sgn, lt_reg, acc, sb[good], x[good])]
        np.minimum.at(lo, sb[vi], x[vi])
        np.maximum.at(hi, sb[vi], x[vi])
    if include_hat:
        lo = np.minimum(lo, th[:, ks])
        hi = np.maximum(hi, th[:, ks])
    empty = ~(np.isfinite(lo).all(1) & np.isfinite(hi).all(1))
    lo = np.where(lo <= box_lo + 1e-6, -math.inf, lo)
    hi = np.where(hi >= box_hi - 1e-6, math.inf, hi)
    return lo, hi, nrej, empty


def _vertex_systems(acc: np.ndarray, sgn: np.ndarray, freq: np.ndarray, key: np.ndarray,
                    box_lo: np.ndarray, box_hi: np.ndarray, q: int
                    ) -> tuple[list[int], list[tuple]]:
    """Candidate vertex systems per board: ``q`` binding constraints among the tones at
    each end and beside each switch (per key), and the search box's faces."""
    sys_b: list[int] = []
    sys_c: list[tuple] = []
    for b in range(acc.shape[0]):
        ar = np.flatnonzero(acc[b])
        cand: set[int] = set()
        for kv in np.unique(key[b, ar]):
            sel = ar[key[b, ar] == kv]
            sel = sel[np.argsort(freq[b, sel], kind="stable")]
            y = sgn[b, sel]
            sw = np.flatnonzero(y[1:] != y[:-1])
            cand.update((int(sel[0]), int(sel[-1])))
            cand.update(sel[sw].tolist())
            cand.update(sel[sw + 1].tolist())
        cons = [(False, i, 0, 0.0) for i in sorted(cand)]
        for j in range(q):
            cons += [(True, 0, j, box_lo[b, j]), (True, 0, j, box_hi[b, j])]
        for combo in itertools.combinations(cons, q):
            if q == 2 and combo[0][0] and combo[1][0] and combo[0][2] == combo[1][2]:
                continue
            sys_b.append(b)
            sys_c.append(combo)
    return sys_b, sys_c


def _solve_vertices(model: _Model, th: np.ndarray, ks: list[int], om: Any, ch: Any,
                    lt_reg: np.ndarray, sb: np.ndarray, sys_c: list[tuple],
                    box_lo: np.ndarray, box_hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method on every candidate system at once: (vertex, converged)."""
    import torch

    S, q = len(sb), len(ks)
    isface = np.array([[c[0] for c in combo] for combo in sys_c], dtype=bool)
    rowidx = np.array([[c[1] for c in combo] for combo in sys_c], dtype=np.int64)
    facej = np.array([[c[2] for c in combo] for combo in sys_c], dtype=np.int64)
    facev = np.array([[c[3] for c in combo] for combo in sys_c], dtype=float)
    bt = torch.from_numpy(sb)[:, None]
    rt = torch.from_numpy(rowidx)
    oms, chs = om[bt, rt], ch[bt, rt]
    lts = lt_reg[sb[:, None], rowidx]
    full = th[sb].copy()
    x = full[:, ks].copy()
    blo, bhi = box_lo[sb], box_hi[sb]
    for e in range(q):  # face equations are linear: start them on their face
        x[isface[:, e], facej[isface[:, e], e]] = facev[isface[:, e], e]
    ok = np.zeros(S, bool)
    alive = np.ones(S, bool)
    for _ in range(50):
        w = np.flatnonzero(alive & ~ok)  # only systems still being solved
        if not len(w):
            break
        full[w[:, None], ks] = x[w]
        Lr, Jr = model.logh(full[w], oms[torch.from_numpy(w)], chs[torch.from_numpy(w)],
                            jac=True)
        F = Lr - lts[w]
        Jx = Jr[..., ks]
        xw = x[w]
        for e in range(q):
            fw = isface[w, e]
            F[:, e] = np.where(fw, xw[np.arange(len(w)), facej[w, e]] - facev[w, e], F[:, e])
            Jx[:, e, :] = np.where(fw[:, None], np.eye(q)[facej[w, e]], Jx[:, e, :])
        conv = np.abs(F).max(1) < 4e-13
        ok[w] = conv
        live = (np.abs(np.linalg.det(Jx)) > 1e-300) & np.isfinite(F).all(1)
        alive[w] = live | conv
        go = live & ~conv
        Jsafe = np.where(go[:, None, None], Jx, np.eye(q))
        step = -np.linalg.solve(Jsafe, np.where(go[:, None], F, 0.0)[..., None])[..., 0]
        x[w] = xw + np.where(go[:, None], np.clip(step, -2.0, 2.0), 0.0)
        alive[w] &= ((x[w] >= blo[w] - 1.0) & (x[w] <= bhi[w] + 1.0)).all(1)
    return x, ok


def _feasible(model: _Model, th: np.ndarray, ks: list[int], om: Any, ch: Any,
              sgn: np.ndarray, lt_reg: np.ndarray, acc: np.ndarray, fb_all: np.ndarray,
              xs: np.ndarray) -> np.ndarray:
    """Which vertices reproduce every accepted observation of their board."""
    import torch

    feas = np.zeros(len(fb_all), bool)
    for c0 in range(0, len(fb_all), 4096):
        fb = fb_all[c0:c0 + 4096]
        fv = th[fb].copy()
        fv[:, ks] = xs[c0:c0 + 4096]
        Lv, _ = model.logh(fv, om[torch.from_numpy(fb)], ch[torch.from_numpy(fb)], jac=False)
        mv = sgn[fb] * (Lv - lt_reg[fb])
        feas[c0:c0 + 4096] = ((mv >= -1e-9) | ~acc[fb]).all(1)
    return feas


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
    intervals are the union of the exact intervals at 9 thresholds across it.
    """
    tau_hat = float(theta[-1])

    def ivs_at(tau: float) -> dict[int, tuple[float, float]] | None:
        out: dict[int, tuple[float, float]] = {}
        for ks, chans in led_only:
            iv, _, _ = _led_interval(prob, theta, ks, chans, tau=tau)
            if not iv:
                return None
            out.update(iv)
        return out

    def edge(direction: float) -> tuple[float, bool]:
        inside, outside = 0.0, 2.0 * direction
        if ivs_at(tau_hat + outside) is not None:
            return outside, True
        for _ in range(16):
            mid = 0.5 * (inside + outside)
            if ivs_at(tau_hat + mid) is not None:
                inside = mid
            else:
                outside = mid
        return inside, False

    lo_d, lo_open = edge(-1.0)
    hi_d, hi_open = edge(+1.0)
    union: dict[int, tuple[float, float]] = {}
    for d in np.linspace(lo_d, hi_d, 9):
        iv = ivs_at(tau_hat + float(d))
        for k, (a, b) in (iv or {}).items():
            a0, b0 = union.get(k, (a, b))
            union[k] = (min(a0, a), max(b0, b))
    return (tau_hat + lo_d, tau_hat + hi_d), union, lo_open or hi_open


def _near_switch(prob: _Problem, th_b: np.ndarray, sigma: float) -> _Problem:
    """One board's problem keeping every gain row but only the LED rows within 40 sigma
    (+0.1) of their threshold for some start in ``th_b`` (see :func:`_active_rows`)."""
    p = len(prob.free)
    sub = _subproblem(prob, prob.ng + np.arange(prob.nl))
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
    out, wrong_rows = {}, {}
    for c in sorted(set(prob.chl.tolist())):
        sel = prob.chl == c
        order = np.argsort(x[sel])
        xs, lit = x[sel][order], prob.sgn[sel][order] > 0
        # cut before position i: lit rows below it and dark rows from it on are wrong
        wrong = np.concatenate([[0], np.cumsum(lit)]) + np.concatenate(
            [np.cumsum((~lit)[::-1])[::-1], [0]])
        i = int(np.argmin(wrong))
        lo = float(math.exp(xs[i - 1])) if i > 0 else 0.0          # always lit: open below
        hi = float(math.exp(xs[i])) if i < len(xs) else math.inf   # never lit: open above
        out[prob.circ.channels[c]] = (lo, hi)
        wrong_rows[prob.circ.channels[c]] = (int(wrong[i]), len(xs))
    return out, wrong_rows


def _check_threshold_identifiable(prob: _Problem, gain_ch: set[int]) -> None:
    led_ch = set(prob.chl.tolist())
    if led_ch <= gain_ch:
        return  # gain rows fix the resistors: one level suffices
    best = 0  # a channel must switch at two levels: one level only fixes R * f(t)
    for c in led_ch:
        levels = set()
        for lv in np.unique(prob.lvl[prob.chl == c]):
            sel = (prob.chl == c) & (prob.lvl == lv)
            y = prob.sgn[sel][np.argsort(prob.freq_l[sel])]
            if (y[1:] != y[:-1]).any():
                levels.add(float(lv))
        best = max(best, len(levels))
    if best < 2:
        raise FitError("cannot estimate the LED threshold: some channel's LED must switch at "
                       f"two or more tone levels (found {best}), or gain data must cover the "
                       "LED channels; give --led-threshold a number instead")

