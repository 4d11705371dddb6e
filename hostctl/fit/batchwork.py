"""The per-board work of ``fit_many`` as array operations over the boards.

A loop of single-board calls (a start per board, a covariance per board, a sensitivity
model evaluation per board) cost ~20 times the batched LM itself. Here each is one array
computation over every board; a board whose case is not the plain one (a channel too
short for the linear start, a Hessian with an uninformed or confounded parameter, a
resistor the tones barely see) goes through the single-board function instead, so what
it says is said in the same words.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from hostctl.fit.intervals import _covariance, _sensitivity_warnings
from hostctl.fit.problem import _Problem
from hostctl.fit.starts import _default_base, _linear_start


def linear_starts(probs: Sequence[_Problem], om: np.ndarray, ch: np.ndarray, lg: np.ndarray,
                  wt: np.ndarray) -> np.ndarray:
    """Every board's :func:`_linear_start` over its default base, ``(B, p)``: per
    channel one batched least squares of the padded rows (zero rows change nothing)."""
    p0 = probs[0]
    B = len(probs)
    th = np.repeat(_default_base(p0)[None, :len(p0.free)], B, 0)
    secs = p0.circ.sections or {}
    alone = np.zeros(B, bool)
    if not secs:
        return th
    for ci, c in enumerate(p0.circ.channels):
        rs = [k for k, r in enumerate(p0.free) if secs.get(r, ("", ""))[0] == c]
        kinds = [secs[p0.free[k]][1] for k in rs]
        if not rs or len(set(kinds)) != len(kinds):
            continue
        if any(r in p0.fixed for r, s in secs.items() if s[0] == c):
            continue
        sel = (ch == ci) & (wt > 0)
        alone |= sel.sum(1) < 3
        w2 = np.where(sel, om * om, 1.0)
        cols = ([w2] if "low" in kinds else []) + ([1.0 / w2] if "high" in kinds else [])
        if len(cols) == 2:
            cols.append(np.ones_like(w2))
        g2 = np.where(sel, np.exp(2 * lg), 0.0)
        A = np.stack(cols, -1) * g2[..., None]                   # (B, n, k)
        scale = np.abs(A).max(1)
        scale[scale == 0] = 1
        sol, full = _lstsq(A / scale[:, None, :], np.where(sel, 1 - g2, 0.0))
        sol /= scale
        alone |= ~full
        j = 0
        for kind in ("low", "high"):
            if kind not in kinds:
                continue
            k = rs[kinds.index(kind)]
            val = sol[:, j]
            j += 1
            ok = np.isfinite(val) & (val > 0)
            C = p0.caps[p0.free[k]]
            lv = np.log(np.where(ok, val, 1.0))
            th[:, k] = np.where(ok, (0.5 * lv if kind == "low" else -0.5 * lv) - math.log(C),
                                th[:, k])
    for b in np.flatnonzero(alone):   # the single-board rules for the short channels
        th[b] = _default_base(probs[b])[:len(p0.free)]
        for k, v in _linear_start(probs[b]).items():
            th[b, k] = v
    return th


def _lstsq(A: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Least squares per board, ``(B, n, k)`` and ``(B, n)`` -> ``(B, k)`` by SVD (as
    ``numpy.linalg.lstsq``), and which boards have full rank."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    tol = s.max(-1, keepdims=True) * max(A.shape[-2:]) * np.finfo(float).eps
    ok = s > tol
    uy = np.einsum("bnk,bn->bk", U, y) * np.where(ok, 1.0 / np.where(ok, s, 1.0), 0.0)
    return np.einsum("bkj,bk->bj", Vt, uy), ok.all(-1)


def covariances(probs: Sequence[_Problem], A: np.ndarray) -> tuple[np.ndarray, list[list[str]]]:
    """:func:`_covariance` of every board (``A`` the unit-noise Hessians, ``(B, P, P)``):
    one batched pseudo-inverse where every parameter is informed and none confounded,
    the single-board function (and its warnings) for the rest."""
    B, P, _ = A.shape
    d = np.sqrt(np.maximum(np.einsum("bpp->bp", A), 0))
    plain = (d > 1e-6 * np.maximum(1.0, d.max(1, keepdims=True))).all(1)
    dd = np.where(plain[:, None], d, 1.0)
    corr = A / (dd[:, :, None] * dd[:, None, :])
    corr[~plain] = np.eye(P)
    plain &= np.linalg.cond(corr) <= 1e10
    cov = np.linalg.pinv(corr) / (dd[:, :, None] * dd[:, None, :])
    warns: list[list[str]] = [[] for _ in range(B)]
    res = [k for k, r in enumerate(probs[0].free) if r in probs[0].circ.resistors]
    wide = (np.sqrt(np.maximum(cov[:, res, res], 0)) > 0.35).any(1)
    for b in np.flatnonzero(~plain | wide):
        cov[b], warns[b] = _covariance(probs[b], A[b], [])
    return cov, warns


def sensitivity_warnings(probs: Sequence[_Problem], theta: np.ndarray, J: np.ndarray,
                         wt: np.ndarray, already: list[list[str]]) -> list[list[str]]:
    """:func:`_sensitivity_warnings` of every board from the batch's Jacobian ``J``
    ``(B, n, p)`` at ``theta``: a board any resistor of which moves the response by less
    than 1 % per 1 % asks the single-board function for its words."""
    p0 = probs[0]
    res = [k for k, r in enumerate(p0.free) if r in p0.circ.resistors]
    sens = np.abs(J[..., res] * (wt[..., None] > 0)).max(1)
    out: list[list[str]] = [[] for _ in probs]
    for b in np.flatnonzero((sens < 0.01).any(1)):
        out[b] = _sensitivity_warnings(probs[b], theta[b], [], already[b])
    return out
