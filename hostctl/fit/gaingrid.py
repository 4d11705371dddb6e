"""Many gain rows as a few thousand model points: the fit of a 2-million-row file costs
what a fit of its frequency grid costs.

A gain row's model value depends only on its channel and frequency, and log|H| of an RC
network is smooth in log frequency. So the model is evaluated on a uniform grid in
``u = ln(omega)`` per channel (step :data:`STEP`) and each row reads it by cubic Lagrange
interpolation from its four nearest nodes (error below ``0.0235 STEP^4 max|d^4 log|H| /
du^4|``, ~1e-9: far under any measurement's noise). The interpolation is linear in the
node values, ``L_rows = W L_nodes``, so the weighted least squares of the rows

    0.5 * sum_i d_i (W L - y)_i^2,      d_i = 1 / (row's noise)^2,

is a quadratic form in the node values whose coefficients (``Q = W^T D W``, banded;
``b' = W^T D e``; ``c' = e^T D e`` with ``e = y - W m`` the rows' residual from a
least-squares grid curve ``m``) are summed once from the rows. Every later evaluation of
cost, gradient and Gauss-Newton Hessian touches only the nodes; centring on ``m`` keeps
the cost free of cancellation (its terms are residual-sized, not ``sum y^2``).

Fewer than :data:`MIN_ROWS` gain rows (every bench session, every test of the fit
itself) are fitted row by row as always.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

#: grid step in ln(omega) (1 % in frequency)
STEP = 0.01
#: below this many gain rows the rows are fitted one by one
MIN_ROWS = 50_000
#: and only when the rows outnumber the grid nodes this many times
MIN_ROWS_PER_NODE = 8
#: rows per block while summing (bounds the temporaries)
BLOCK = 1 << 18


def _weights(t: np.ndarray) -> tuple[np.ndarray, ...]:
    """Cubic Lagrange weights of the nodes -1, 0, 1, 2 at 0 <= t < 1."""
    tm1, tm2, tp1 = t - 1.0, t - 2.0, t + 1.0
    return (-t * tm1 * tm2 / 6.0, tp1 * tm1 * tm2 / 2.0, -tp1 * t * tm2 / 2.0,
            tp1 * t * tm1 / 6.0)


@dataclass
class GainGrid:
    """The gain rows' sufficient statistics on a per-channel grid of frequencies."""

    omega: Any                 # torch (G,) node angular frequencies, channel blocks
    ch: Any                    # torch long (G,) node channels
    start: np.ndarray          # (N,) int32: each row's first node (global index)
    t: np.ndarray              # (N,) its position between nodes 1 and 2, in [0, 1)
    Qd: np.ndarray             # (4, G): Q[k, k+o] for o = 0..3 (banded, symmetric)
    bp: np.ndarray             # (G,) W^T D e
    cp: float                  # e^T D e
    m: np.ndarray              # (G,) the centring curve

    @property
    def size(self) -> int:
        return len(self.m)

    def _q(self, x: np.ndarray) -> np.ndarray:
        """``Q @ x`` along axis 1 of ``x`` (B, G[, P])."""
        q = self.Qd
        ex = (slice(None),) + (None,) * (x.ndim - 2)
        y = q[0][ex] * x
        for o in (1, 2, 3):
            qo = q[o][:-o][ex]
            y[:, :-o] += qo * x[:, o:]
            y[:, o:] += qo * x[:, :-o]
        return y

    def terms(self, L: np.ndarray, J: np.ndarray | None, s_gain: float
              ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Cost (B,), gradient (B, P) and Gauss-Newton Hessian (B, P, P) of the gain rows
        from the node values ``L`` (B, G) and their Jacobian ``J`` (B, G, P)."""
        s2 = s_gain * s_gain
        dl = L - self.m
        qd = self._q(dl)
        cost = 0.5 * (np.einsum("bg,bg->b", dl, qd - 2.0 * self.bp) + self.cp) / s2
        if J is None:
            return cost, None, None
        r = qd - self.bp
        g = np.einsum("bgp,bg->bp", J, r) / s2
        A = J.transpose(0, 2, 1) @ self._q(J) / s2
        return cost, g, A

    def rows(self, nodes: np.ndarray, lo: int = 0, hi: int | None = None) -> np.ndarray:
        """Rows ``lo:hi`` interpolated from per-node values ``nodes`` (G[, P])."""
        s, t = self.start[lo:hi], self.t[lo:hi]
        w = _weights(t)
        ex = (slice(None),) + (None,) * (nodes.ndim - 1)
        return sum(w[a][ex] * nodes[s + a] for a in range(4))

    def row_values(self, nodes: np.ndarray) -> np.ndarray:
        """Every row's value from the node values (G,)."""
        out = np.empty(len(self.t))
        for i in range(0, len(self.t), BLOCK):
            out[i:i + BLOCK] = self.rows(nodes, i, i + BLOCK)
        return out

    def max_abs_nodes(self, nodes: np.ndarray) -> np.ndarray:
        """Largest |value| of each column of ``nodes`` (G, P) over the nodes the rows
        read (rows lie densely between them: the rows' own largest differs by the
        interpolation's error and a fraction of a step's change)."""
        used = self.Qd[0] > 0
        return np.abs(nodes[used]).max(0) if used.any() else np.zeros(nodes.shape[1])


def gain_grid(freq: np.ndarray, ch: np.ndarray, logg: np.ndarray, sg: np.ndarray | None
              ) -> GainGrid | None:
    """The grid for these gain rows, or None when they are too few to gain from it.
    Every pass over the rows goes by blocks: the temporaries stay a few MB."""
    import torch

    n = len(freq)
    if n < MIN_ROWS:
        return None
    chans = np.unique(ch)
    lo = np.full(len(chans), np.inf)
    hi = np.full(len(chans), -np.inf)
    for i in range(0, n, BLOCK):
        f, c = freq[i:i + BLOCK], ch[i:i + BLOCK]
        for j, cj in enumerate(chans):
            fc = f[c == cj]
            if len(fc):
                lo[j], hi[j] = min(lo[j], fc.min()), max(hi[j], fc.max())
    first = np.log(2 * math.pi * lo) - STEP
    count = np.floor((np.log(2 * math.pi * hi) - first) / STEP).astype(np.int64) + 3
    G = int(count.sum())
    if n < MIN_ROWS_PER_NODE * G:
        return None
    offset = np.concatenate([[0], np.cumsum(count)[:-1]])
    start = np.empty(n, dtype=np.int32)
    t = np.empty(n)
    for i in range(0, n, BLOCK):
        pos = np.searchsorted(chans, ch[i:i + BLOCK])
        x = (np.log(2 * math.pi * freq[i:i + BLOCK]) - first[pos]) / STEP
        j = np.clip(np.floor(x).astype(np.int64), 1, count[pos] - 3)
        t[i:i + BLOCK] = x - j
        start[i:i + BLOCK] = offset[pos] + j - 1
    Qd, b = _moments(start, t, sg, logg, G)
    m = _centre(Qd, b)
    nodes = np.concatenate([first[k] + STEP * np.arange(count[k]) for k in range(len(chans))])
    grid = GainGrid(torch.from_numpy(np.exp(nodes)),
                    torch.from_numpy(np.repeat(chans.astype(np.int64), count)), start, t, Qd,
                    np.zeros(G), 0.0, m)
    for i in range(0, n, BLOCK):   # the rows' residuals from the centre curve: b', c'
        e = logg[i:i + BLOCK] - grid.rows(m, i, i + BLOCK)
        de = e if sg is None else e / sg[i:i + BLOCK] ** 2
        s, w = start[i:i + BLOCK], _weights(t[i:i + BLOCK])
        for a in range(4):
            grid.bp += np.bincount(s + a, w[a] * de, minlength=G)
        grid.cp += float(de @ e)
    return grid


def _moments(start: np.ndarray, t: np.ndarray, sg: np.ndarray | None, y: np.ndarray, G: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """``Q = W^T D W`` as four upper diagonals and ``b = W^T D y``, summed by blocks."""
    Qd = np.zeros((4, G))
    b = np.zeros(G)
    for i in range(0, len(t), BLOCK):
        s, w = start[i:i + BLOCK], _weights(t[i:i + BLOCK])
        d = 1.0 if sg is None else 1.0 / sg[i:i + BLOCK] ** 2
        yd = y[i:i + BLOCK] * d
        for a in range(4):
            b += np.bincount(s + a, w[a] * yd, minlength=G)
            for c in range(a, 4):
                Qd[c - a] += np.bincount(s + a, w[a] * w[c] * d, minlength=G)
    return Qd, b


def _centre(Qd: np.ndarray, b: np.ndarray) -> np.ndarray:
    """A least-squares grid curve through the rows (lightly damped where rows are few):
    only a centre for the quadratic form, so it need not be exact."""
    from scipy.linalg import solveh_banded

    diag = Qd[0]
    ridge = 1e-6 * float(diag.max()) + 1e-300
    ab = np.zeros((4, len(b)))
    for o in range(4):   # upper form: ab[3 - o, k + o] = Q[k, k + o]
        ab[3 - o, o:] = Qd[o][:len(b) - o]
    ab[3] = np.where(diag > 0, diag, 1.0) + ridge
    try:
        return solveh_banded(ab, b, lower=False, check_finite=False)
    except np.linalg.LinAlgError:
        return np.zeros(len(b))
