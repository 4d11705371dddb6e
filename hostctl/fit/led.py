"""LED data: data-consistent intervals (exact vertices), threshold profiles."""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from hostctl.errors import FitError
from hostctl.fit.bisect import PROFILE_DEPTH, PROFILE_STEPS, _bisect_edges  # noqa: F401
from hostctl.fit.model import _Model
from hostctl.fit.problem import _Problem, _subproblem
from hostctl.fit.settings import BOX, Z95
from hostctl.fit.starts import _grid_range

#: step (log ohm) of the forward differences that stand in for a Jacobian
FD_STEP = 2.0 ** -24
#: a vertex whose residual (log) stalls below this counts as solved: the rounding floor
#: of the model, and the tolerance every accepted observation is checked to
STALL_TOL = 1e-9
#: a measured reference amplitude's relative scatter (virtual bench seed 1: sd 7.9e-4, 234
#: rows vs ngspice): an estimated V_f's rows are each relaxed by its 95 % end (slack, log)
VIN_SLACK = Z95 * 8e-4
#: model points (vertices x rows) per feasibility pass
FEASIBLE_POINTS = 1 << 18

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
    msgs: list[str] = []
    if len(ks) > 2 and np.isin(prob.chl, list(chans)).any():
        msgs.append("interval for more than two coupled resistors is not computed exactly")
    taus = None if tau is None else np.array([tau])
    reg = _led_regions(prob, theta, ks, chans, taus, accept_all)
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


def _led_regions(prob: _Problem, theta: np.ndarray, ks: list[int], chans: set[int],
                 taus: np.ndarray | None, accept_all: bool = False
                 ) -> tuple[np.ndarray, np.ndarray, int, np.ndarray] | None:
    """One LED-only group's consistent region at each threshold of ``taus`` (log t_ref;
    None: at the estimate, which then lies inside it) in one batch: lo, hi (T, q), rows
    rejected at the estimate, empty (T,). None when the group has no rows or couples
    more than two resistors (no exact region then)."""
    p_all = len(prob.free)
    rows = np.flatnonzero(np.isin(prob.chl, list(chans)))
    if not len(rows) or len(ks) > 2:
        return None
    sub = _subproblem(prob, rows + prob.ng)
    t_hat = theta[p_all] if prob.est_t else prob.log_t
    # an estimated V_f: lit rows may sit VIN_SLACK below it, dark ones above
    lvl = sub.lvl - sub.sgn * VIN_SLACK if prob.est_volts else sub.lvl
    lt_acc = (t_hat + lvl)[None]
    tt = np.array([t_hat]) if taus is None else np.asarray(taus, dtype=float)
    lt_reg = (tt[:, None] + lvl[None])[:, None]          # (T, 1, n)
    key = sub.chl * 4096 + sub.groups()
    box_lo, box_hi = _box(prob, theta, ks)
    lo, hi, nrej, empty = _vertex_intervals(
        sub.model, theta[None, :p_all], ks, sub.omega[None], sub.ch[None], sub.sgn[None],
        lt_acc, lt_reg, np.ones((1, len(rows)), bool), sub.freq_l[None], key[None],
        box_lo[None], box_hi[None], include_hat=taus is None and not accept_all,
        accept_all=accept_all)
    return lo[:, 0], hi[:, 0], int(nrej[0]), empty[:, 0]


def _box(prob: _Problem, theta: np.ndarray, ks: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Search box (log R) for LED intervals: the coarse grid's span and the estimate,
    widened by BOX; a bound on the box means the data leave that side open."""
    lo = np.array([min(_grid_range(prob, k)[0], theta[k]) - BOX for k in ks])
    hi = np.array([max(_grid_range(prob, k)[-1], theta[k]) + BOX for k in ks])
    return lo, hi


def _vertex_intervals(model: _Model, th: np.ndarray, ks: list[int], om: Any, ch: Any,
                      sgn: np.ndarray, lt_acc: np.ndarray, lt_reg: np.ndarray,
                      valid: np.ndarray, freq: np.ndarray, key: np.ndarray,
                      box_lo: np.ndarray, box_hi: np.ndarray, include_hat: bool = True,
                      accept_all: bool = False
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Consistent intervals of resistors ``ks`` for B boards at once (rows padded).

    Region = {theta : sign_i (log|H_i| - log t_i) >= 0 for accepted rows}, rows accepted
    at the estimate ``th`` (B, p). For one or two free resistors its projections are
    attained at vertices: points where ``q`` binding constraints hold with equality --
    tones next to an LED switch (per ``key`` = channel and level), or the faces of the
    search box ``box_lo..box_hi`` (B, q). Each candidate system is solved by Newton's
    method (all boards' systems in one batch), and a vertex counts only if it
    reproduces every accepted observation of its board.

    ``lt_reg`` (B, n) places the region's thresholds; (T, B, n) evaluates it at T sets of
    thresholds in the same batch (a threshold profile: acceptance and candidate systems
    do not depend on it). Returns lo, hi (B, q) -- (T, B, q) -- in log ohm (-inf / inf
    where the region reaches the box), the number of rejected rows per board, and which
    boards have an empty region (B,) -- (T, B).
    """
    B, n = sgn.shape
    q = len(ks)
    om, ch = _numpy(om), _numpy(ch)
    if accept_all:
        acc = valid.copy()
    else:
        L = _logh_plain(model, th, om, ch)
        acc = valid & (sgn * (L - lt_acc) >= -1e-12)
    nrej = (valid & ~acc).sum(1)
    sys_b, sys_c = _vertex_systems(acc, sgn, freq, key, box_lo, box_hi, q,
                                   np.broadcast_to(lt_acc, sgn.shape))
    lt3 = lt_reg.reshape((-1, B, n))
    T = lt3.shape[0]
    # T thresholds x B boards: virtual board t * B + b reads board b's rows
    rb = np.tile(np.arange(B), T)
    lo = np.full((T * B, q), math.inf)
    hi = np.full((T * B, q), -math.inf)
    if sys_b:
        sb = (np.arange(T)[:, None] * B + np.array(sys_b)[None]).reshape(-1)
        eqs = np.tile(_equations(sys_c), (T, 1, 1))
        x, ok = _solve_vertices(model, th, ks, om, ch, lt3.reshape(T * B, n), sb, eqs,
                                box_lo, box_hi, rb)
        blo, bhi = box_lo[rb[sb]], box_hi[rb[sb]]
        good = np.flatnonzero(ok & ((x >= blo - 1e-9) & (x <= bhi + 1e-9)).all(1))
        rows = np.unique(eqs[:, 1][eqs[:, 0] == 0]).astype(np.int64)
        if len(rows) < n:   # the same check on the systems' own tones first: most vertices
            #                 fail there, and few tones cost little (vertices x rows)
            good = good[_feasible(model, th, ks, om[:, rows], ch[:, rows], sgn[:, rows],
                                  lt3.reshape(T * B, n)[:, rows], acc[:, rows], sb[good],
                                  x[good], rb)]
        vi = good[_feasible(model, th, ks, om, ch, sgn, lt3.reshape(T * B, n), acc,
                            sb[good], x[good], rb)]
        np.minimum.at(lo, sb[vi], x[vi])
        np.maximum.at(hi, sb[vi], x[vi])
    if include_hat:
        lo = np.minimum(lo, th[rb][:, ks])
        hi = np.maximum(hi, th[rb][:, ks])
    empty = ~(np.isfinite(lo).all(1) & np.isfinite(hi).all(1))
    lo = np.where(lo <= box_lo[rb] + 1e-6, -math.inf, lo)
    hi = np.where(hi >= box_hi[rb] - 1e-6, math.inf, hi)
    if lt_reg.ndim == 2:
        return lo, hi, nrej, empty
    return lo.reshape(T, B, q), hi.reshape(T, B, q), nrej, empty.reshape(T, B)


def _numpy(a: Any) -> np.ndarray:
    """A problem's torch tensor (or an array) as a numpy array, no copy."""
    return a.numpy() if hasattr(a, "numpy") else np.asarray(a)


def _logh_plain(model: _Model, theta: np.ndarray, om: np.ndarray, ch: np.ndarray
                ) -> np.ndarray:
    """log|H| (S, n) where no gradient is needed: the model's numpy program, or -- when a
    free parameter enters an element through an expression (``{R_low/S_low}``), which
    the program does not compile -- the netlist solved in numpy for the whole batch at
    once (autograd's model goes a block of rows at a time, for its graph's memory)."""
    solver = getattr(model.circ, "solver", None)
    if model._fast is not None or solver is None:
        return model.logh(theta, *_model_rows(model, om, ch), jac=False)[0]
    from hostctl.circuits.registry import _overrides
    from hostctl.fit.model import _pick

    circ = model.circ
    values: dict[str, Any] = {k: float(v) for k, v in model.fixed.items()}
    values.update({name: np.exp(theta[:, k])[:, None] for k, name in enumerate(model.free)})
    ref = circ.probe.get("ref")
    nodes = ([ref] if ref else []) + [circ.probe[c] for c in circ.channels]
    if om.ndim == 2 and om.shape[0] == 1:
        om, ch = om[0], ch.reshape(-1)
    inv = None
    if om.ndim == 1:   # rows share tones: solve each distinct tone once
        uo, inv = np.unique(om, return_inverse=True)
        om = uo[None, :]
    caps = {k: float(v) for k, v in model.ct.items()}
    V = solver.solve_numpy(om, _overrides(circ, values, caps), nodes)
    H = _pick(np.abs(V), inv, ch, bool(ref), False)
    return np.log(np.maximum(H, 1e-300))


def _model_rows(model: _Model, om: np.ndarray, ch: np.ndarray) -> tuple[Any, Any]:
    """Tones and channels as the model takes them: arrays for its numpy program, torch
    tensors for a closed form (no netlist: the test oracle's circuits)."""
    if model._fast is not None:
        return om, ch
    import torch

    return (torch.from_numpy(np.ascontiguousarray(om)),
            torch.from_numpy(np.ascontiguousarray(ch)))


def _logh_dx(model: _Model, theta: np.ndarray, ks: list[int], om: np.ndarray,
             ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log|H| (S, n) and its derivative in ``theta[:, ks]`` (S, n, q) for Newton's method:
    the model's exact adjoint where it has a numpy program, else forward differences of
    :func:`_logh_plain` (all q + 1 points in one batch; Newton's root is set by the
    residual, a Jacobian good to ~1e-7 only changes how fast it gets there)."""
    if model._fast is not None or getattr(model.circ, "solver", None) is None:
        L, J = model.logh(theta, *_model_rows(model, om, ch), jac=True)
        return L, J[..., ks]
    S, q = len(theta), len(ks)
    pts = np.tile(theta, (q + 1, 1))
    h = np.empty((q, S))
    for j, k in enumerate(ks):
        moved = theta[:, k] + FD_STEP
        h[j] = moved - theta[:, k]
        pts[(j + 1) * S:(j + 2) * S, k] = moved
    Ls = _logh_plain(model, pts, np.tile(om, (q + 1, 1)), np.tile(ch, (q + 1, 1)))
    L = Ls[:S]
    J = np.stack([(Ls[(j + 1) * S:(j + 2) * S] - L) / h[j][:, None] for j in range(q)], -1)
    return L, J


def _equations(sys_c: list[tuple]) -> np.ndarray:
    """Candidate systems as one array (S, 4, q): face?, row, face axis, face value."""
    return np.array([[[c[0] for c in combo], [c[1] for c in combo], [c[2] for c in combo],
                      [c[3] for c in combo]] for combo in sys_c], dtype=float)


def _vertex_systems(acc: np.ndarray, sgn: np.ndarray, freq: np.ndarray, key: np.ndarray,
                    box_lo: np.ndarray, box_hi: np.ndarray, q: int,
                    lt: np.ndarray | None = None) -> tuple[list[int], list[tuple]]:
    """Candidate vertex systems per board: ``q`` binding constraints among the tones at
    each end and beside each switch (per key), and the search box's faces.

    With one threshold per key the response is monotone between switches, so a bound is
    set beside a switch or at an end. With a level per row (``lt``: LEDs on volts, each
    tone its own reference amplitude) an LED that never switches is bounded where the
    product of response and sagging amplitude peaks -- inside the run, and where depends
    on the resistor: every row of such a key is a candidate (alone, or with a face)."""
    sys_b: list[int] = []
    sys_c: list[tuple] = []
    for b in range(acc.shape[0]):
        ar = np.flatnonzero(acc[b])
        cand: set[int] = set()
        loose: set[int] = set()
        for kv in np.unique(key[b, ar]):
            sel = ar[key[b, ar] == kv]
            sel = sel[np.argsort(freq[b, sel], kind="stable")]
            y = sgn[b, sel]
            sw = np.flatnonzero(y[1:] != y[:-1])
            cand.update((int(sel[0]), int(sel[-1])))
            cand.update(sel[sw].tolist())
            cand.update(sel[sw + 1].tolist())
            if lt is not None and not len(sw) and np.ptp(lt[b, sel]) > 1e-9:
                loose.update(sel.tolist())
        cons = [(False, i, 0, 0.0) for i in sorted(cand)]
        faces = []
        for j in range(q):
            faces += [(True, 0, j, box_lo[b, j]), (True, 0, j, box_hi[b, j])]
        for combo in itertools.combinations(cons + faces, q):
            if q == 2 and combo[0][0] and combo[1][0] and combo[0][2] == combo[1][2]:
                continue
            sys_b.append(b)
            sys_c.append(combo)
        for i in sorted(loose - cand):
            for combo in ([((False, i, 0, 0.0),)] if q == 1 else
                          [((False, i, 0, 0.0), f) for f in faces] if q == 2 else []):
                sys_b.append(b)
                sys_c.append(combo)
    return sys_b, sys_c


def _solve_vertices(model: _Model, th: np.ndarray, ks: list[int], om: np.ndarray,
                    ch: np.ndarray, lt_reg: np.ndarray, sb: np.ndarray, eqs: np.ndarray,
                    box_lo: np.ndarray, box_hi: np.ndarray, rb: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method on every candidate system at once: (vertex, converged).
    ``sb`` each system's (virtual) board, ``rb`` the board whose rows it reads."""
    S, q = len(sb), len(ks)
    isface = eqs[:, 0] != 0
    rowidx = eqs[:, 1].astype(np.int64)
    facej = eqs[:, 2].astype(np.int64)
    facev = eqs[:, 3]
    br = rb[sb]
    oms, chs = om[br[:, None], rowidx], ch[br[:, None], rowidx]
    lts = lt_reg[sb[:, None], rowidx]
    full = th[br].copy()
    x = full[:, ks].copy()
    blo, bhi = box_lo[br], box_hi[br]
    for e in range(q):  # face equations are linear: start them on their face
        x[isface[:, e], facej[isface[:, e], e]] = facev[isface[:, e], e]
    ok = np.zeros(S, bool)
    alive = np.ones(S, bool)
    fprev = np.full(S, math.inf)
    for _ in range(50):
        w = np.flatnonzero(alive & ~ok)  # only systems still being solved
        if not len(w):
            break
        full[w[:, None], ks] = x[w]
        Lr, Jx = _logh_dx(model, full[w], ks, oms[w], chs[w])
        F = Lr - lts[w]
        xw = x[w]
        for e in range(q):
            fw = isface[w, e]
            F[:, e] = np.where(fw, xw[np.arange(len(w)), facej[w, e]] - facev[w, e], F[:, e])
            Jx[:, e, :] = np.where(fw[:, None], np.eye(q)[facej[w, e]], Jx[:, e, :])
        fmax = np.abs(F).max(1)
        # converged, or stalled at the model's rounding (a passive network's log|H| is good
        # to ~1e-11): Newton no longer halves a residual already below the tolerance
        # the vertex's observations are checked to (:func:`_feasible`)
        conv = (fmax < 4e-13) | ((fmax < STALL_TOL) & (fmax >= 0.5 * fprev[w]))
        fprev[w] = fmax
        ok[w] = conv
        live = (np.abs(np.linalg.det(Jx)) > 1e-300) & np.isfinite(F).all(1)
        alive[w] = live | conv
        go = live & ~conv
        Jsafe = np.where(go[:, None, None], Jx, np.eye(q))
        step = -np.linalg.solve(Jsafe, np.where(go[:, None], F, 0.0)[..., None])[..., 0]
        x[w] = xw + np.where(go[:, None], np.clip(step, -2.0, 2.0), 0.0)
        alive[w] &= ((x[w] >= blo[w] - 1.0) & (x[w] <= bhi[w] + 1.0)).all(1)
    return x, ok


def _feasible(model: _Model, th: np.ndarray, ks: list[int], om: np.ndarray, ch: np.ndarray,
              sgn: np.ndarray, lt_reg: np.ndarray, acc: np.ndarray, fb_all: np.ndarray,
              xs: np.ndarray, rb: np.ndarray) -> np.ndarray:
    """Which vertices reproduce every accepted observation of their board (in pieces of
    ~FEASIBLE_POINTS model points: a vertex is checked on every row of its board)."""
    feas = np.zeros(len(fb_all), bool)
    step = max(1, FEASIBLE_POINTS // max(1, om.shape[-1]))
    for c0 in range(0, len(fb_all), step):
        fb = fb_all[c0:c0 + step]
        br = rb[fb]
        fv = th[br].copy()
        fv[:, ks] = xs[c0:c0 + step]
        if om.shape[0] == 1:   # one board's rows: its distinct tones solved once
            Lv = _logh_plain(model, fv, om[0], ch[0])
        else:
            Lv = _logh_plain(model, fv, om[br], ch[br])
        mv = sgn[br] * (Lv - lt_reg[fb])
        feas[c0:c0 + step] = ((mv >= -1e-9) | ~acc[br]).all(1)
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
    intervals are the union of the exact intervals at 9 thresholds across it. Each batch
    of thresholds is one evaluation per group (:func:`_led_regions`).
    """
    tau_hat = float(theta[-1])

    def ivs_at(ds: list[float]) -> list[dict[int, tuple[float, float]] | None]:
        taus = tau_hat + np.array(ds, dtype=float)
        ok = np.ones(len(taus), bool)
        per = []
        for ks, chans in led_only:
            idx = np.flatnonzero(ok)   # a threshold one group rules out is not tried further
            reg = _led_regions(prob, theta, ks, chans, taus[idx]) if len(idx) else None
            if reg is None:
                return [None] * len(taus)
            lo, hi, _, empty = reg
            ok[idx[empty]] = False
            per.append((ks, idx, lo, hi))
        out: list[dict[int, tuple[float, float]] | None] = []
        for t in np.arange(len(taus)):
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

