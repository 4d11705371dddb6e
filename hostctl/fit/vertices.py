"""The vertices of LED data-consistent regions: every candidate system solved at once.

Why batched: a region's vertex is the root of a tiny system (one or two rows, or a box
face), and each Newton step is one model call for every system alive. The call's fixed
cost dwarfs its arithmetic, so every board -- or every channel group of one problem, each
with its own resistors -- goes through the same calls (issue 18: the notebook's LED fit).
"""

from __future__ import annotations

import itertools
import math
from typing import Any

import numpy as np

from hostctl.fit.model import _Model

#: step (log ohm) of the forward differences that stand in for a Jacobian
FD_STEP = 2.0 ** -24
#: a vertex whose residual (log) stalls below this counts as solved: the rounding floor
#: of the model, and the tolerance every accepted observation is checked to
STALL_TOL = 1e-9
#: model points (vertices x rows) per feasibility pass
FEASIBLE_POINTS = 1 << 18


def _vertex_intervals(model: _Model, th: np.ndarray, ks: Any, om: Any, ch: Any,
                      sgn: np.ndarray, lt_acc: np.ndarray, lt_reg: np.ndarray,
                      valid: np.ndarray, freq: np.ndarray, key: np.ndarray,
                      box_lo: np.ndarray, box_hi: np.ndarray, include_hat: bool = True,
                      accept_all: bool = False, qb: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Consistent intervals of resistors ``ks`` for B boards at once (rows padded).

    Region = {theta : sign_i (log|H_i| - log t_i) >= 0 for accepted rows}, rows accepted
    at the estimate ``th`` (B, p). For one or two free resistors its projections are
    attained at vertices: points where ``q`` binding constraints hold with equality --
    tones next to an LED switch (per ``key`` = channel and level), or the faces of the
    search box ``box_lo..box_hi`` (B, q). Each candidate system is solved by Newton's
    method (all boards' systems in one batch), and a vertex counts only if it
    reproduces every accepted observation of its board.

    ``ks``: the resistors, one list for all boards, or (B, q) each board its own (a
    "board" is then one channel group of a problem). A board of ``qb[b] < q`` resistors
    pads its row of ``ks`` with other parameters, held at ``th`` by face equations (its
    box there: lo = hi = that value); its padded columns of lo/hi mean nothing. ``om``,
    ``ch`` of one row (1, n) are rows every board shares.

    ``lt_reg`` (B, n) places the region's thresholds; (T, B, n) evaluates it at T sets of
    thresholds in the same batch (a threshold profile: acceptance and candidate systems
    do not depend on it). Returns lo, hi (B, q) -- (T, B, q) -- in log ohm (-inf / inf
    where the region reaches the box), the number of rejected rows per board, and which
    boards have an empty region (B,) -- (T, B).
    """
    B, n = sgn.shape
    kb = np.broadcast_to(np.asarray(ks, dtype=np.int64).reshape(-1, box_lo.shape[1]),
                         box_lo.shape)
    q = kb.shape[1]
    om, ch = _numpy(om), _numpy(ch)
    if accept_all:
        acc = valid.copy()
    else:
        L = _logh_plain(model, th, om, ch)
        acc = valid & (sgn * (L - lt_acc) >= -1e-12)
    nrej = (valid & ~acc).sum(1)
    sys_b, sys_c = _vertex_systems(acc, sgn, freq, key, box_lo, box_hi, q,
                                   np.broadcast_to(lt_acc, sgn.shape), qb)
    lt3 = np.broadcast_to(lt_reg, lt_reg.shape[:-2] + (B, n)).reshape((-1, B, n))
    T = lt3.shape[0]
    # T thresholds x B boards: virtual board t * B + b reads board b's rows
    rb = np.tile(np.arange(B), T)
    lo = np.full((T * B, q), math.inf)
    hi = np.full((T * B, q), -math.inf)
    if sys_b:
        sb = (np.arange(T)[:, None] * B + np.array(sys_b)[None]).reshape(-1)
        eqs = np.tile(_equations(sys_c), (T, 1, 1))
        x, ok = _solve_vertices(model, th, kb, om, ch, lt3.reshape(T * B, n), sb, eqs,
                                box_lo, box_hi, rb)
        blo, bhi = box_lo[rb[sb]], box_hi[rb[sb]]
        good = np.flatnonzero(ok & ((x >= blo - 1e-9) & (x <= bhi + 1e-9)).all(1))
        rows = np.unique(eqs[:, 1][eqs[:, 0] == 0]).astype(np.int64)
        if len(rows) < n:   # the same check on the systems' own tones first: most vertices
            #                 fail there, and few tones cost little (vertices x rows)
            good = good[_feasible(model, th, kb, om[:, rows], ch[:, rows], sgn[:, rows],
                                  lt3.reshape(T * B, n)[:, rows], acc[:, rows], sb[good],
                                  x[good], rb)]
        vi = good[_feasible(model, th, kb, om, ch, sgn, lt3.reshape(T * B, n), acc,
                            sb[good], x[good], rb)]
        np.minimum.at(lo, sb[vi], x[vi])
        np.maximum.at(hi, sb[vi], x[vi])
    if include_hat:
        hat = np.take_along_axis(th[rb], kb[rb], 1)
        lo, hi = np.minimum(lo, hat), np.maximum(hi, hat)
    empty = ~(np.isfinite(lo).all(1) & np.isfinite(hi).all(1))
    lo = np.where(lo <= box_lo[rb] + 1e-6, -math.inf, lo)
    hi = np.where(hi >= box_hi[rb] - 1e-6, math.inf, hi)
    if lt_reg.ndim == 2:
        return lo, hi, nrej, empty
    return lo.reshape(T, B, q), hi.reshape(T, B, q), nrej, empty.reshape(T, B)


def _numpy(a: Any) -> np.ndarray:
    """A problem's torch tensor (or an array) as a numpy array, no copy."""
    return a.numpy() if hasattr(a, "numpy") else np.asarray(a)


def _of_boards(a: np.ndarray, boards: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """``a[board, col]`` per system (``boards`` (S,), ``cols`` (S, q)): one row (1, n) is
    every board's."""
    return a[(boards if a.shape[0] > 1 else np.zeros_like(boards))[:, None], cols]


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


def _logh_dx(model: _Model, theta: np.ndarray, ks: Any, om: np.ndarray,
             ch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """log|H| (S, n) and its derivative in ``theta[:, ks]`` (S, n, q) for Newton's method
    (``ks`` one list, or (S, q) each point its own): the model's exact adjoint where it
    has a numpy program, else forward differences of :func:`_logh_plain` (all q + 1
    points in one batch; Newton's root is set by the residual, a Jacobian good to ~1e-7
    only changes how fast it gets there)."""
    S = len(theta)
    kk = np.asarray(ks, dtype=np.int64)
    if model._fast is not None or getattr(model.circ, "solver", None) is None:
        L, J = model.logh(theta, *_model_rows(model, om, ch), jac=True)
        if kk.ndim == 1:
            return L, J[..., kk]
        return L, J[np.arange(S)[:, None, None], np.arange(J.shape[1])[None, :, None],
                    kk[:, None, :]]
    kk = np.broadcast_to(kk.reshape(-1, kk.shape[-1]), (S, kk.shape[-1]))
    q = kk.shape[1]
    pts = np.tile(theta, (q + 1, 1))
    h = np.empty((q, S))
    s = np.arange(S)
    for j in range(q):
        moved = theta[s, kk[:, j]] + FD_STEP
        h[j] = moved - theta[s, kk[:, j]]
        pts[(j + 1) * S + s, kk[:, j]] = moved
    Ls = _logh_plain(model, pts, np.tile(om, (q + 1, 1)), np.tile(ch, (q + 1, 1)))
    L = Ls[:S]
    J = np.stack([(Ls[(j + 1) * S:(j + 2) * S] - L) / h[j][:, None] for j in range(q)], -1)
    return L, J


def _equations(sys_c: list[tuple]) -> np.ndarray:
    """Candidate systems as one array (S, 4, q): face?, row, face axis, face value."""
    return np.array(sys_c, dtype=float).transpose(0, 2, 1)


def _vertex_systems(acc: np.ndarray, sgn: np.ndarray, freq: np.ndarray, key: np.ndarray,
                    box_lo: np.ndarray, box_hi: np.ndarray, q: int,
                    lt: np.ndarray | None = None, qb: np.ndarray | None = None
                    ) -> tuple[list[int], list[tuple]]:
    """Candidate vertex systems per board: ``q`` binding constraints among the tones at
    each end and beside each switch (per key), and the search box's faces (a board of
    ``qb[b]`` resistors: its own systems, each padded by faces holding the rest).

    With one threshold per key the response is monotone between switches, so a bound is
    set beside a switch or at an end. With a level per row (``lt``: LEDs on volts, each
    tone its own reference amplitude) an LED that never switches is bounded where the
    product of response and sagging amplitude peaks -- inside the run, and where depends
    on the resistor: every row of such a key is a candidate (alone, or with a face)."""
    sys_b: list[int] = []
    sys_c: list[tuple] = []
    for b in range(acc.shape[0]):
        qq = q if qb is None else int(qb[b])
        pad = tuple((True, 0, j, box_lo[b, j]) for j in range(qq, q))
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
        for j in range(qq):
            faces += [(True, 0, j, box_lo[b, j]), (True, 0, j, box_hi[b, j])]
        for combo in itertools.combinations(cons + faces, qq):
            if qq == 2 and combo[0][0] and combo[1][0] and combo[0][2] == combo[1][2]:
                continue
            sys_b.append(b)
            sys_c.append(combo + pad)
        for i in sorted(loose - cand):
            for combo in ([((False, i, 0, 0.0),)] if qq == 1 else
                          [((False, i, 0, 0.0), f) for f in faces] if qq == 2 else []):
                sys_b.append(b)
                sys_c.append(combo + pad)
    return sys_b, sys_c


def _solve_vertices(model: _Model, th: np.ndarray, ks: np.ndarray, om: np.ndarray,
                    ch: np.ndarray, lt_reg: np.ndarray, sb: np.ndarray, eqs: np.ndarray,
                    box_lo: np.ndarray, box_hi: np.ndarray, rb: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Newton's method on every candidate system at once: (vertex, converged).
    ``sb`` each system's (virtual) board, ``rb`` the board whose rows it reads, ``ks``
    (B, q) each board's resistors."""
    S, q = len(sb), ks.shape[1]
    isface = eqs[:, 0] != 0
    rowidx = eqs[:, 1].astype(np.int64)
    facej = eqs[:, 2].astype(np.int64)
    facev = eqs[:, 3]
    br = rb[sb]
    oms, chs = _of_boards(om, br, rowidx), _of_boards(ch, br, rowidx)
    lts = lt_reg[sb[:, None], rowidx]
    kss = ks[br]
    full = th[br].copy()
    x = np.take_along_axis(full, kss, 1)
    blo, bhi = box_lo[br], box_hi[br]
    for e in range(q):  # face equations are linear: start them on their face
        x[isface[:, e], facej[isface[:, e], e]] = facev[isface[:, e], e]
    ok = np.zeros(S, bool)
    alive = np.ones(S, bool)
    fprev = np.full(S, math.inf)
    facerow = np.eye(q)[facej]          # a face equation's row of the Jacobian (S, q, q)
    lo1, hi1 = blo - 1.0, bhi + 1.0
    rows = np.arange(S)[:, None]
    for _ in range(50):
        # the arithmetic on every system, masked to those still being solved: a few dozen
        # systems cost less than selecting them (step after step, indexing was half the time)
        act = alive & ~ok
        if not act.any():
            break
        full[rows, kss] = x
        # every system, solved or not: the same tone arrays at every step, so the model
        # reuses their distinct tones and the values that depend on tones alone
        Lr, Jx = _logh_dx(model, full, kss, oms, chs)
        # a face equation x_j = v holds exactly from the start (its step is exactly 0)
        F = np.where(isface, 0.0, Lr - lts)
        Jx = np.where(isface[..., None], facerow, Jx)
        fmax = np.abs(F).max(1)
        # converged, or stalled at the model's rounding (a passive network's log|H| is good
        # to ~1e-11): Newton no longer halves a residual already below the tolerance
        # the vertex's observations are checked to (:func:`_feasible`)
        conv = act & ((fmax < 4e-13) | ((fmax < STALL_TOL) & (fmax >= 0.5 * fprev)))
        fprev = np.where(act, fmax, fprev)
        det, step = _newton_step(Jx, F)
        live = (np.abs(det) > 1e-300) & np.isfinite(F).all(1)
        go = act & live & ~conv
        cut = np.where(go[:, None], np.clip(step, -2.0, 2.0), 0.0)
        x = x + cut
        alive &= ~act | ((live | conv) & ((x >= lo1) & (x <= hi1)).all(1))
        # a step this small after a residual this small lands on the root to rounding
        # (Newton's error squares): solved, without evaluating it once more
        ok |= conv | (go & (fmax < 1e-6) & (np.abs(cut).max(1) < 1e-7))
    return x, ok


def _newton_step(J: np.ndarray, F: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """det J and the Newton step -J^-1 F of (S, q, q) systems: closed forms for q <= 2
    (LAPACK's batched call costs three times the arithmetic of these tiny systems); a
    singular system's step is not finite, and it is not taken."""
    q = J.shape[-1]
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        if q == 1:
            return J[:, 0, 0], -F / J[:, 0]
        if q == 2:
            a, b, c, d = J[:, 0, 0], J[:, 0, 1], J[:, 1, 0], J[:, 1, 1]
            det = a * d - b * c
            return det, np.stack([b * F[:, 1] - d * F[:, 0], c * F[:, 0] - a * F[:, 1]],
                                 1) / det[:, None]
    det = np.linalg.det(J)
    ok = np.abs(det) > 1e-300
    step = -np.linalg.solve(np.where(ok[:, None, None], J, np.eye(q)),
                            np.where(ok[:, None], F, 0.0)[..., None])[..., 0]
    return det, step


def _feasible(model: _Model, th: np.ndarray, ks: np.ndarray, om: np.ndarray, ch: np.ndarray,
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
        fv[np.arange(len(fb))[:, None], ks[br]] = xs[c0:c0 + step]
        if om.shape[0] == 1:   # rows every board shares: their distinct tones solved once
            Lv = _logh_plain(model, fv, om[0], ch[0])
        else:
            Lv = _logh_plain(model, fv, om[br], ch[br])
        mv = sgn[br] * (Lv - lt_reg[fb])
        feas[c0:c0 + step] = ((mv >= -1e-9) | ~acc[br]).all(1)
    return feas
