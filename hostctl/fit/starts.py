"""Starting values: exact linear starts for first-order sections, coarse grids."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

from hostctl.errors import InputError
from hostctl.fit.problem import _Problem, _subproblem, nuisances

if TYPE_CHECKING:
    pass


#: model points (grid starts x rows) evaluated at once while scanning the grid
GRID_POINTS = 1 << 12
#: the same where the netlist's numpy program evaluates the model (no autograd graph: a
#: point costs ~100 bytes per node, and each call's fixed cost is what adds up)
GRID_POINTS_NUMPY = 1 << 16


def _groups(prob: _Problem) -> list[tuple[list[int], set[int]]]:
    """Free resistors linked by shared channels: (free indices, channel indices)."""
    circ = prob.circ
    secs = circ.sections or {}
    chidx = {c: i for i, c in enumerate(circ.channels)}
    own = [(k, r) for k, r in enumerate(prob.free) if r in circ.resistors]  # not nuisances
    if not secs or any(r not in secs for _, r in own):
        return [([k for k, _ in own], set(range(len(circ.channels))))]
    groups: list[tuple[list[int], set[int]]] = []
    for k, r in own:
        c = chidx[secs[r][0]]
        for g in groups:
            if c in g[1]:
                g[0].append(k)
                break
        else:
            groups.append(([k], {c}))
    return groups


def _linear_start(prob: _Problem) -> dict[int, float]:
    """Exact-on-clean-data starts for buffered first-order sections from gain rows.

    ``1/|H|^2 - 1 = b w^2 + a / w^2 + a b`` with ``b = (R_lo C)^2`` and
    ``a = 1/(R_hi C)^2`` is linear in (b, a, ab); weighted by gain^2 (relative errors).
    """
    out: dict[int, float] = {}
    secs = prob.circ.sections or {}
    if not prob.ng or not secs:
        return out
    chidx = {c: i for i, c in enumerate(prob.circ.channels)}
    for c, ci in chidx.items():
        rs = [k for k, r in enumerate(prob.free) if secs.get(r, ("", ""))[0] == c]
        kinds = [secs[prob.free[k]][1] for k in rs]
        if not rs or len(set(kinds)) != len(kinds):
            continue
        sel = prob.chg == ci
        if sel.sum() < 3:
            continue
        gs, ws = np.exp(prob.logg[sel]), 2 * math.pi * prob.freq_g[sel]
        cols = []
        if "low" in kinds:
            cols.append(ws ** 2)
        if "high" in kinds:
            cols.append(ws ** -2.0)
        if len(cols) == 2:
            cols.append(np.ones_like(ws))
        # fixed resistors on this channel would break the form: only all-free channels
        allr = [r for r, s in secs.items() if s[0] == c]
        if any(r in prob.fixed for r in allr):
            continue
        try:
            sol = _lstsq_by_blocks(cols, gs)
        except np.linalg.LinAlgError:
            continue
        j = 0
        for kind in ("low", "high"):
            if kind not in kinds:
                continue
            k = rs[kinds.index(kind)]
            val = sol[j]
            j += 1
            if not (np.isfinite(val) and val > 0):
                continue
            C = prob.caps[prob.free[k]]
            out[k] = 0.5 * math.log(val) - math.log(C) if kind == "low" else \
                -0.5 * math.log(val) - math.log(C)
    return out


def _lstsq_by_blocks(cols: list[np.ndarray], gs: np.ndarray) -> np.ndarray:
    """Least squares of ``cols * gs^2`` (columns scaled to 1) against ``1 - gs^2``. Many
    rows go through a QR per block and one solve of the stacked R factors (the same
    solution, without a copy of the whole matrix for LAPACK)."""
    n = len(gs)
    if n <= LSTSQ_BLOCK:
        A = np.stack(cols, 1) * (gs ** 2)[:, None]
        scale = np.abs(A).max(axis=0)
        scale[scale == 0] = 1
        return np.linalg.lstsq(A / scale, 1 - gs ** 2, rcond=None)[0] / scale
    scale = np.array([np.abs(c * gs ** 2).max() for c in cols])
    scale[scale == 0] = 1
    rs = []
    for i in range(0, n, LSTSQ_BLOCK):
        g2 = gs[i:i + LSTSQ_BLOCK] ** 2
        Ab = np.stack([c[i:i + LSTSQ_BLOCK] * g2 / sc for c, sc in zip(cols, scale,
                                                                       strict=True)]
                      + [1 - g2], 1)
        rs.append(np.linalg.qr(Ab, mode="r"))
    R = np.concatenate(rs)
    return np.linalg.lstsq(R[:, :-1], R[:, -1], rcond=None)[0] / scale


#: rows per block of the blockwise least squares
LSTSQ_BLOCK = 1 << 16


def _grid_range(prob: _Problem, k: int) -> np.ndarray:
    """Coarse log grid for resistor k: 1 ohm..1 Mohm scaled by C, widened to the tones."""
    C = prob.caps[prob.free[k]]
    s = 1e-6 / C
    fmax = max(prob.freq_g.max(initial=-math.inf), prob.freq_l.max(initial=-math.inf))
    fmin = min(prob.freq_g.min(initial=math.inf), prob.freq_l.min(initial=math.inf))
    lo = min(math.log(1.0 * s), -math.log(2 * math.pi * fmax * 30 * C))
    hi = max(math.log(1e6 * s), -math.log(2 * math.pi * fmin / 30 * C))
    n = max(8, int(round((hi - lo) / math.log(10) * 3)) + 1)
    return np.linspace(lo, hi, n)


def _grid_starts(prob: _Problem, base: np.ndarray, sigma: float, s_gain: float,
                 top: int = 3) -> list[np.ndarray]:
    """Best few points of a coarse grid per channel group (others held at ``base``)."""
    groups = _groups(prob)
    per_group: list[list[np.ndarray]] = []
    ch_all = prob.ch.numpy()
    rng = np.random.default_rng(0)
    for ks, chans in groups:
        rows = np.flatnonzero(np.isin(ch_all, list(chans)))
        if len(rows) > 120:  # a random subsample, plus every tone next to an LED switch
            keep = set(rng.choice(rows, 120, replace=False).tolist())
            keep.update((prob.ng + _switch_rows(prob, chans)).tolist())
            rows = np.array(sorted(keep), dtype=np.int64)
        axes = [_grid_range(prob, k) for k in ks]
        if len(ks) > 2:
            axes = [a[:: max(1, len(a) // 8)] for a in axes]
        dims = list(ks)
        if prob.est_t and prob.nl:  # the threshold is a grid dimension too
            dims.append(len(prob.free))
            axes.append(base[-1] + np.linspace(-3.0, 3.0, 13))
        if not len(rows):  # nothing observed: keep the neutral value
            per_group.append([base[dims]])
            continue
        mesh = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, len(dims))
        th = np.repeat(base[None], len(mesh), 0)
        th[:, dims] = mesh
        sub = _subproblem(prob, rows)
        # a few hundred grid points at a time: the model's graph over mesh x rows points
        # would otherwise take hundreds of MB (each point its own complex system)
        points = GRID_POINTS if prob.model._fast is None else GRID_POINTS_NUMPY
        step = max(1, points // len(rows))
        cost = np.concatenate([sub.objective(th[i:i + step], sigma=sigma, s_gain=s_gain,
                                             use_prior=True, deriv=False)[0]
                               for i in range(0, len(th), step)])
        order = np.argsort(cost)
        picks: list[np.ndarray] = []
        for i in order:
            cand = mesh[i]
            if all(np.abs(cand - q).max() > 1.0 for q in picks):
                picks.append(cand)
            if len(picks) >= top:
                break
        per_group.append(picks)
    starts = []
    for j in range(top):
        th = base.copy()
        taus = []
        for (ks, _), picks in zip(groups, per_group, strict=True):
            pick = picks[min(j, len(picks) - 1)]
            th[ks] = pick[:len(ks)]
            if len(pick) > len(ks):
                taus.append(pick[-1])
        if taus:
            th[-1] = float(np.mean(taus))
        starts.append(th)
    return starts


def _switch_rows(prob: _Problem, chans: set[int]) -> np.ndarray:
    """LED rows (indices into the LED rows) next to a switch along frequency, per channel
    and tone level."""
    on = np.zeros(max(int(prob.chl.max(initial=0)), *chans, 0) + 1, bool)
    on[list(chans)] = True
    sel = np.flatnonzero(on[prob.chl])
    # one sort for every channel and level: by frequency within (channel, level), ties in
    # row order (a stable sort), so neighbours are those of a sort per channel and level
    g, c = prob.groups()[sel], prob.chl[sel]
    order = np.lexsort((prob.freq_l[sel], g, c))
    sel, g, c, y = sel[order], g[order], c[order], prob.sgn[sel][order]
    sw = np.flatnonzero((c[1:] == c[:-1]) & (g[1:] == g[:-1]) & (y[1:] != y[:-1]))
    return np.union1d(sel[sw], sel[sw + 1]).astype(np.int64)


def _default_base(prob: _Problem) -> np.ndarray:
    """Neutral values: 1 kohm at 1 uF (scaled by C), the middle of the coarse grid."""
    base = np.zeros(prob.npar)
    nuis = nuisances(prob.circ)
    for k, name in enumerate(prob.free):
        base[k] = (math.log(nuis[name][0]) if name in nuis
                   else math.log(1e3 * 1e-6 / prob.caps[name]))
    if prob.est_t:
        base[-1] = prob.log_t
    return base


def _init_theta(prob: _Problem, init: Mapping[str, float] | float | None) -> np.ndarray | None:
    if init is None:
        return None
    th = _default_base(prob)
    for k, name in enumerate(prob.free):
        v = init if isinstance(init, (int, float)) else init.get(name)
        if v is None:
            continue
        if not (math.isfinite(float(v)) and float(v) > 0):
            raise InputError(f"init for {name} must be a positive resistance, got {v}")
        th[k] = math.log(float(v))
    return th


#: public name for peers that start from the same point (benchmarks against scipy)
linear_start = _linear_start
#: the neutral start every fit begins from (1 kohm at 1 uF), for the same peers
default_start = _default_base
