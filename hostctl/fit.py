"""Fit component values to measurements: gain data, LED data, or both.

Why it looks like this (and not like the course notebook):

* Parameters are ``log R``: corners live on a log axis, a 1% step means the same at 10 ohm
  and at 10 kohm, and no learning rate or start value is asked of anyone.
* Gain data: least squares on ``log|H_model| - log gain`` by Levenberg-Marquardt
  (damped Gauss-Newton). The Jacobian comes from torch autograd in reverse mode with
  *per-row copies* of every parameter: each row of the residual depends only on its
  own copy, so one backward pass of ``sum(residuals)`` yields every row's gradient,
  i.e. the whole Jacobian (the same numbers as ``torch.func.jacrev``, at the cost of
  one backward pass instead of one per row). Everything is batched over a leading
  dimension (several starts, or several boards in :func:`fit_many`).
* LED data are thresholded observations, not targets for a mean squared error: the LED
  is lit iff ``|H(f)| > t``. The estimate maximises a probit likelihood
  ``P(lit) = eps + (1 - 2 eps) Phi((log|H| - log t) / sigma)`` (``eps`` = 1e-3, a lapse
  rate, so one misread LED costs at most ``-log eps``) with ``sigma`` annealed from 0.3
  down to 0.001 in log|H| units; the optimum tends to the point with equal log-margins
  to the nearest on and off tones. The Newton/LM steps use the exact curvature of the
  link (IRLS), which converges in a handful of iterations per stage.
* The reported LED interval is the exact *data-consistent* set: every value in it
  reproduces all accepted LED observations. Its end points are vertices of the
  consistent region, found by Newton's method on ``|H(f_i)| = t`` for one (1-D
  sections) or two (band-pass: the region is bounded by the four curves of the tones
  on either side of the switch-on and switch-off) binding tones, kept only if they
  satisfy every other observation.
* Rule for noisy LED data: observations the probit estimate misclassifies are treated
  as noise (counted in ``FitResult.notes``); the interval is the consistent set of the
  remaining ("accepted") observations, so it always contains the estimate.
* Gain and LED rows together: one likelihood, gain residuals divided by their noise
  scale from a gain-only pilot fit (floored at 1 ppm), so gains dominate wherever
  they exist; resistors only LED rows see get the data-consistent interval.
* ``led_threshold="estimate"``: ``lit iff |H| * 10**(level_dbfs/20) > t_ref``, t_ref a
  free parameter; the LED intervals are profiled over every consistent t_ref.
"""

from __future__ import annotations

import itertools
import json
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.circuits import LED_THRESHOLD, Circuit, capacitances, get_circuit
from hostctl.errors import FitError, InputError
from hostctl.measurements import MeasurementSet, atomic_write_json

if TYPE_CHECKING:
    import torch

LOSSES = ("auto", "notebook-mse", "notebook-weighted")
Z95 = 1.959963984540054
LN10_20 = math.log(10.0) / 20.0
#: probit noise scales (in log|H| units) for the annealing, coarse to fine
SIGMA_SCHEDULE = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001)
#: a start whose fit leaves an rms log error above this triggers the multi-start search
MISFIT_RMS = 0.05
#: a channel whose gains the final fit misses by more than this (rms, log) is not this model
MISFIT_TRUST = 0.15
#: an LED channel with more of its observations rejected than this is not this model
LED_MISFIT_FRACTION = 0.1
#: smallest gain noise scale (log units) used to weigh gain rows against LED rows / priors
S_GAIN_FLOOR = 1e-6
#: probability that an LED observation is simply wrong (robust probit). The coarsest
#: annealing stage runs without it: a pure probit still pulls from far-off starts where
#: every observation is wrong, which a bounded loss would not
LED_LAPSE = 1e-3
#: margin (in log R) around the coarse grid's span for the LED interval search box
BOX = 5.0


@dataclass
class FitResult:
    """What a fit found, how sure it is, and how it got there."""

    circuit: str
    values: dict[str, float]              # ohm
    ci95: dict[str, tuple[float, float]]  # ohm (0 / inf where the data leave a side open)
    corner_hz: dict[str, float]
    capacitance: dict[str, float]         # per resistor, farad
    converged: bool
    iterations: int
    seconds: float
    method: str                           # gauss-newton | led-interval | joint | notebook-*
    loss: str
    led_threshold: float | None
    led_threshold_estimated: bool
    warnings: list[str]
    n_gain: int
    n_led: int
    notes: list[str] = field(default_factory=list)
    #: how each interval was obtained: "jacobian", "data-consistent", "fixed", "none"
    ci_method: dict[str, str] = field(default_factory=dict)
    #: consistent range of an estimated LED threshold (LED-only data), else None
    led_threshold_ci95: tuple[float, float] | None = None
    #: per-channel thresholds when each LED has its own (then ``led_threshold`` is None)
    led_thresholds: dict[str, float] | None = None
    #: False when the data contradict the model itself (see ``warnings``): do not use
    trusted: bool = True
    #: consistent range of each LED's threshold ("estimate-each"), else None
    led_thresholds_ci95: dict[str, tuple[float, float]] | None = None

    def predict(self, freq_hz: Any) -> dict[str, np.ndarray]:
        """|H| per channel at ``freq_hz`` for the fitted values."""
        circ = get_circuit(self.circuit)
        out = circ.response(np.asarray(freq_hz, dtype=float), self.values, self.capacitance)
        return {k: v.detach().numpy() for k, v in out.items()}

    def to_json(self) -> dict:
        def num(v: float) -> float | None:
            return float(v) if math.isfinite(v) else None

        return {
            "circuit": self.circuit,
            "values": {k: float(v) for k, v in self.values.items()},
            "ci95": {k: [num(lo), num(hi)] for k, (lo, hi) in self.ci95.items()},
            "corner_hz": {k: float(v) for k, v in self.corner_hz.items()},
            "capacitance": dict(self.capacitance),
            "converged": bool(self.converged), "iterations": int(self.iterations),
            "seconds": float(self.seconds), "method": self.method, "loss": self.loss,
            "led_threshold": self.led_threshold,
            "led_threshold_estimated": bool(self.led_threshold_estimated),
            "warnings": list(self.warnings), "n_gain": self.n_gain, "n_led": self.n_led,
            "notes": list(self.notes), "ci_method": dict(self.ci_method),
            "led_threshold_ci95": (None if self.led_threshold_ci95 is None
                                   else [num(x) for x in self.led_threshold_ci95]),
            "led_thresholds": self.led_thresholds,
            "trusted": bool(self.trusted),
            "led_thresholds_ci95": (None if self.led_thresholds_ci95 is None else
                                    {k: [num(lo), num(hi)]
                                     for k, (lo, hi) in self.led_thresholds_ci95.items()}),
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write as JSON (atomically)."""
        atomic_write_json(path, self.to_json())

    @classmethod
    def load(cls, path: str | os.PathLike) -> FitResult:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
            return cls.from_json(d)
        except FileNotFoundError:
            raise InputError("no such file", str(path)) from None
        except (ValueError, KeyError, TypeError) as e:
            raise InputError(f"not a hostctl fit result ({e})", str(path)) from None

    @classmethod
    def from_json(cls, d: Mapping[str, Any]) -> FitResult:
        ci = {}
        for k, (lo, hi) in d["ci95"].items():
            ci[k] = (0.0 if lo is None else float(lo), math.inf if hi is None else float(hi))
        return cls(
            circuit=d["circuit"], values={k: float(v) for k, v in d["values"].items()},
            ci95=ci, corner_hz={k: float(v) for k, v in d["corner_hz"].items()},
            capacitance={k: float(v) for k, v in d["capacitance"].items()},
            converged=bool(d["converged"]), iterations=int(d["iterations"]),
            seconds=float(d["seconds"]), method=d["method"], loss=d["loss"],
            led_threshold=d.get("led_threshold"),
            led_threshold_estimated=bool(d.get("led_threshold_estimated", False)),
            warnings=list(d.get("warnings", [])), n_gain=int(d.get("n_gain", 0)),
            n_led=int(d.get("n_led", 0)), notes=list(d.get("notes", [])),
            ci_method=dict(d.get("ci_method", {})),
            led_threshold_ci95=(None if d.get("led_threshold_ci95") is None
                                else tuple(math.inf if x is None else float(x)
                                           for x in d["led_threshold_ci95"])),
            led_thresholds=(None if d.get("led_thresholds") is None
                            else {k: float(v) for k, v in d["led_thresholds"].items()}),
            trusted=bool(d.get("trusted", True)),
            led_thresholds_ci95=(None if d.get("led_thresholds_ci95") is None else
                                 {k: (float(lo), math.inf if hi is None else float(hi))
                                  for k, (lo, hi) in d["led_thresholds_ci95"].items()}),
        )


# --- the model with per-row parameter copies ------------------------------------------

class _Model:
    """log|H| of the selected channel at each row, and its Jacobian in log R."""

    def __init__(self, circ: Circuit, caps: Mapping[str, float], free: Sequence[str],
                 fixed: Mapping[str, float]) -> None:
        import torch

        self.torch = torch
        self.circ = circ
        self.free = list(free)
        self.fixed = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in fixed.items()}
        self.ct = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in caps.items()}
        self.nch = len(circ.channels)

    def logh(self, theta: np.ndarray, omega: torch.Tensor, ch: torch.Tensor,
             jac: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``theta`` (S, p) log-ohms; ``omega``/``ch`` (n,) or (S, n). Returns (S, n), (S, n, p)."""
        torch = self.torch
        S = theta.shape[0]
        shape = (S, omega.shape[-1])
        th = torch.from_numpy(np.ascontiguousarray(theta, dtype=np.float64))
        R: dict[str, torch.Tensor] = dict(self.fixed)
        leaves = []
        with torch.set_grad_enabled(jac):
            for k, name in enumerate(self.free):
                v = th[:, k:k + 1].exp().expand(shape).contiguous()
                if jac:
                    v.requires_grad_(True)
                R[name] = v
                leaves.append(v)
            out = self.circ.model(omega, R, self.ct)
            if self.nch == 1:
                H = torch.broadcast_to(out[self.circ.channels[0]], shape)
            else:
                Hs = torch.stack([torch.broadcast_to(out[c], shape) for c in self.circ.channels],
                                 -1)
                H = Hs.gather(-1, torch.broadcast_to(ch, shape).unsqueeze(-1)).squeeze(-1)
            L = H.clamp_min(1e-300).log()
            if not jac:
                return L.numpy(), None
            grads = torch.autograd.grad(L.sum(), leaves, allow_unused=True) if leaves else ()
        J = np.zeros(shape + (len(self.free),))
        for k, g in enumerate(grads):
            if g is not None:
                J[..., k] = (g * leaves[k].detach()).numpy()
        return L.detach().numpy(), J


# --- the problem: rows, parameters, residuals ----------------------------------------

@dataclass
class _Problem:
    circ: Circuit
    caps: dict[str, float]
    free: list[str]
    fixed: dict[str, float]
    model: _Model
    omega: Any          # torch (N,) gain rows then LED rows
    ch: Any             # torch long (N,)
    ng: int
    nl: int
    logg: np.ndarray
    sgn: np.ndarray     # +1 lit, -1 dark
    lvl: np.ndarray     # -level_dbfs * ln10/20 (0 if the threshold is not estimated)
    log_t: float        # fixed log threshold, or start of log t_ref when estimated
    est_t: bool
    prior_idx: np.ndarray
    prior_mu: np.ndarray
    prior_sig: np.ndarray
    freq_g: np.ndarray
    freq_l: np.ndarray
    chg: np.ndarray
    chl: np.ndarray
    warnings: list[str] = field(default_factory=list)
    #: per-LED-row weights (B, n) for padded batches of boards (None: all rows count)
    wt: np.ndarray | None = None
    #: per-channel fixed thresholds (folded into ``lvl``), or None
    t_map: dict[str, float] | None = None

    @property
    def npar(self) -> int:
        return len(self.free) + (1 if self.est_t else 0)

    def objective(self, theta: np.ndarray, *, sigma: float = 0.01, s_gain: float = 1.0,
                  use_prior: bool = True, deriv: bool = True, lapse: float = LED_LAPSE
                  ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Negative log-likelihood per batch member, its gradient and a Gauss-Newton Hessian.

        Gain rows: ``0.5 * ((log|H| - log g) / s_gain)^2``. LED rows: ``-log Phi(z)`` with
        ``z = sign * (log|H| - log t) / sigma`` -- convex in z, so the Hessian uses the exact
        curvature of the link (IRLS / Fisher scoring) and drops only the model's. Prior
        rows: ``0.5 * ((log R - log mu) / sigma_prior)^2``.
        """
        from scipy.special import log_ndtr

        p = len(self.free)
        B, P = theta.shape
        L, JL = self.model.logh(theta[:, :p], self.omega, self.ch, deriv)
        cost = np.zeros(B)
        g = np.zeros((B, P)) if deriv else None
        A = np.zeros((B, P, P)) if deriv else None
        if self.ng:
            r = (L[:, :self.ng] - self.logg) / s_gain
            cost += 0.5 * np.einsum("bn,bn->b", r, r)
            if deriv:
                Jg = JL[:, :self.ng] / s_gain
                Jgt = Jg.transpose(0, 2, 1)
                g[:, :p] += (Jgt @ r[..., None])[..., 0]
                A[:, :p, :p] += Jgt @ Jg
        if self.nl:
            logt = (theta[:, p:p + 1] if self.est_t else self.log_t) + self.lvl
            z = self.sgn * (L[:, self.ng:] - logt) / sigma
            # P(observation) = eps + (1 - 2 eps) Phi(z): a lapse rate bounds what one
            # misread LED can cost (a pure probit's tail grows like z^2 and lets one stray
            # observation far from any switch drag the whole fit)
            log_l = math.log(lapse) if lapse > 0 else -math.inf
            log_1m2l = math.log1p(-2 * lapse)
            lp = np.logaddexp(log_l, log_1m2l + log_ndtr(z))
            cost -= (lp if self.wt is None else lp * self.wt).sum(1)
            if deriv:
                lam = np.exp(log_1m2l - 0.5 * z * z - 0.5 * math.log(2 * math.pi) - lp)
                w = np.maximum(lam * (z + lam), 0.0)      # d2(-log P)/dz2, clipped at 0
                if self.wt is not None:
                    lam, w = lam * self.wt, w * self.wt
                dz = np.zeros((B, self.nl, P))
                dz[..., :p] = (self.sgn / sigma)[..., None] * JL[:, self.ng:]
                if self.est_t:
                    dz[..., p] = -self.sgn / sigma
                dzt = dz.transpose(0, 2, 1)
                g -= (dzt @ lam[..., None])[..., 0]
                A += dzt @ (dz * w[..., None])
        if use_prior and len(self.prior_idx):
            rp = (theta[:, self.prior_idx] - self.prior_mu) / self.prior_sig
            cost += 0.5 * (rp * rp).sum(1)
            if deriv:
                g[:, self.prior_idx] += rp / self.prior_sig
                A[:, self.prior_idx, self.prior_idx] += 1.0 / self.prior_sig ** 2
        return cost, g, A


def _lm(fun, theta0: np.ndarray, *, max_iter: int = 100, xtol: float = 1e-10,
        ftol: float = 1e-13
        ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
    """Batched Levenberg-Marquardt on ``fun(theta (B,P)) -> cost (B,), grad (B,P), H (B,P,P)``.

    Returns theta, cost, H (at the solution), converged mask, iterations. Each batch member
    has its own damping; converged members stop moving (they are still evaluated, which
    is cheaper than re-indexing every array).
    """
    theta = np.array(theta0, dtype=float)
    B, P = theta.shape
    cost, g, A = fun(theta)
    lam = np.full(B, 1e-4)
    done = np.zeros(B, bool)
    it = 0
    eye = np.eye(P)
    while it < max_iter and not done.all():
        it += 1
        d = np.einsum("bpp->bp", A).copy()
        dmax = d.max(axis=1, keepdims=True)
        d = np.maximum(d, 1e-12 * dmax + 1e-300)
        M = A + lam[:, None, None] * d[:, :, None] * eye + 1e-300 * eye
        try:
            step = -np.linalg.solve(M, g[..., None])[..., 0]
        except np.linalg.LinAlgError:
            step = -np.einsum("bpq,bq->bp", np.linalg.pinv(M), g)
        step = np.clip(step, -3.0, 3.0)  # no jump of more than e^3 per iteration
        step[done] = 0.0
        trial = theta + step
        ct, gt, At = fun(trial)
        # a step that changes the cost only by rounding is a converged step, not a failure:
        # rejecting it would grow the damping for nothing (iterations 12 -> 3 on noisy data)
        flat = np.abs(ct - cost) <= ftol * np.abs(cost) + 1e-300
        acc = ((ct <= cost) | flat) & ~done & np.isfinite(ct)
        small = np.abs(step).max(axis=1) < xtol
        rel = (cost - ct) <= ftol * np.abs(cost) + 1e-300
        newdone = acc & (small | rel | (ct < 1e-28 * max(1, P)))
        theta[acc] = trial[acc]
        g[acc] = gt[acc]
        A[acc] = At[acc]
        cost = np.where(acc, ct, cost)
        lam = np.where(acc, np.maximum(lam / 5, 1e-12), lam * 8)
        newdone |= (~acc) & (lam > 1e10)
        done |= newdone
    return theta, cost, A, done, it


# --- building the problem from a MeasurementSet --------------------------------------

def _usable(m: Any, what: str) -> bool:
    """Row usable for a gain / an LED fit (flag rules live in measurements.py)."""
    attr = getattr(m, f"{what}_usable", None)
    if attr is not None:
        return bool(attr)
    return getattr(m, what) is not None and not m.flag


def _rowerror(msg: str, row: int, column: str) -> InputError:
    e = InputError(f"row {row + 1}: {msg}")
    e.row, e.column_name, e.bare = row, column, msg  # type: ignore[attr-defined]
    return e


def _build(data: MeasurementSet, circ: Circuit, caps: dict[str, float],
           led_threshold: float | Mapping[str, float] | str,
           prior: Mapping[str, tuple[float, float]] | None,
           fixed: Mapping[str, float] | None, use_gain: bool = True,
           use_led: bool = True) -> _Problem:
    import torch

    fixed = dict(fixed or {})
    for k, v in fixed.items():
        if k not in circ.resistors:
            raise InputError(f"fixed: '{k}' is not a resistor of {circ.name} "
                             f"({', '.join(circ.resistors)})")
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"fixed: {k} must be a positive resistance, got {v}")
    free = [r for r in circ.resistors if r not in fixed]
    if not free:
        raise FitError("every resistor is fixed: nothing to fit")
    chidx = {c: i for i, c in enumerate(circ.channels)}
    warn: list[str] = []
    est = led_threshold == "estimate"
    rows = data.rows
    nan = math.nan
    # one pass over the rows into columns (the only Python-level loop over the data)
    cols = [(m.frequency_hz, m.channel, nan if m.gain is None else m.gain,
             -1 if m.led is None else m.led, nan if m.level_dbfs is None else m.level_dbfs,
             m.flag) for m in rows]
    if not cols:
        raise FitError("no usable rows: the data set is empty")
    F, CH, G, Y, LV, FL = zip(*cols, strict=True)
    F = np.array(F, dtype=float)
    G = np.array(G, dtype=float)
    Y = np.array(Y, dtype=np.int64)
    LV = np.array(LV, dtype=float)
    if any(FL):
        gmask = np.array([_usable(m, "gain") for m in rows])
        lmask = np.array([_usable(m, "led") for m in rows])
    else:
        gmask, lmask = ~np.isnan(G), Y >= 0
    gmask &= use_gain
    lmask &= use_led
    used = gmask | lmask
    chi = np.array([chidx.get(c, -1) for c in CH], dtype=np.int64)
    bad = np.flatnonzero(used & (chi < 0))
    if len(bad):
        i = int(bad[0])
        raise _rowerror(f"channel '{CH[i]}' is not an output of circuit {circ.name} "
                        f"({', '.join(circ.channels)})", i, "channel")
    bad = np.flatnonzero(used & ~(np.isfinite(F) & (F > 0)))
    if len(bad):
        i = int(bad[0])
        raise _rowerror(f"frequency {F[i]} must be a positive number", i, "frequency_hz")
    bad = np.flatnonzero(gmask & ~np.isfinite(G))
    if len(bad):
        i = int(bad[0])
        raise _rowerror(f"gain {G[i]} is not finite", i, "gain")
    bad = np.flatnonzero(lmask & (Y != 0) & (Y != 1))
    if len(bad):
        i = int(bad[0])
        raise _rowerror(f"LED state must be 0 or 1, got {Y[i]}", i, "led")
    if est:
        bad = np.flatnonzero(lmask & np.isnan(LV))
        if len(bad):
            raise _rowerror("estimating the LED threshold needs level_dbfs on every LED row",
                            int(bad[0]), "level_dbfs")
    zero = gmask & (G <= 0)
    n_zero = int(zero.sum())
    gmask &= ~zero
    fg, cg, gg = F[gmask], chi[gmask], G[gmask]
    fl, cl, yl = F[lmask], chi[lmask], Y[lmask]
    ll = LV[lmask] if est else np.zeros(len(fl))
    if n_zero:
        warn.append(f"dropped {n_zero} gain value(s) <= 0 (no log); they carry no usable "
                    "information for a log-error fit")
    if not len(fg) and not len(fl):
        raise FitError("no usable rows: need gain or LED observations on the circuit's "
                       f"channels ({', '.join(circ.channels)})")
    f_all = np.concatenate([fg, fl])
    omega = torch.from_numpy(2 * math.pi * f_all)
    ch = torch.from_numpy(np.concatenate([cg, cl]))
    if isinstance(led_threshold, str) and not est:
        raise InputError(f"led_threshold must be a number or 'estimate', got '{led_threshold}'")
    t_map: dict[str, float] | None = None
    if isinstance(led_threshold, Mapping):
        # one LED per channel, each its own threshold: a per-row offset of log t
        t_map = {}
        for c, v in led_threshold.items():
            if c not in chidx:
                raise InputError(f"LED threshold for '{c}': not a channel of {circ.name} "
                                 f"({', '.join(circ.channels)})")
            t_map[c] = float(v)
            if not (math.isfinite(t_map[c]) and t_map[c] > 0):
                raise InputError(f"LED threshold for {c} must be a positive number, got {v}")
        missing = sorted({circ.channels[c] for c in cl} - set(t_map))
        if missing:
            raise InputError(f"no LED threshold for channel {', '.join(missing)}")
        log_t = 0.0
        lvl = np.log(np.array([t_map[circ.channels[c]] for c in cl], dtype=float))
    elif not est:
        t = float(led_threshold)
        if not (math.isfinite(t) and t > 0):
            raise InputError(f"LED threshold must be a positive number, got {led_threshold}")
        log_t = math.log(t)
        lvl = np.zeros(len(fl))
    else:
        lv = np.array(ll, dtype=float)
        lvl = -lv * LN10_20
        log_t = math.log(LED_THRESHOLD) + (float(np.median(lv)) * LN10_20 if len(lv) else 0.0)
    pidx, pmu, psig = [], [], []
    for k, spec in (prior or {}).items():
        if k not in circ.resistors:
            raise InputError(f"prior: '{k}' is not a resistor of {circ.name} "
                             f"({', '.join(circ.resistors)})")
        mu, sig = (float(spec[0]), float(spec[1]))
        if not (math.isfinite(mu) and mu > 0 and math.isfinite(sig) and sig > 0):
            raise InputError(f"prior for {k}: need a positive value and a positive sigma, "
                             f"got {spec}")
        if k in fixed:
            continue
        pidx.append(free.index(k))
        pmu.append(math.log(mu))
        psig.append(sig)
    model = _Model(circ, caps, free, fixed)
    return _Problem(circ, caps, free, fixed, model, omega, ch, len(fg), len(fl),
                    np.log(np.array(gg, dtype=float)), np.where(np.array(yl) > 0, 1.0, -1.0),
                    lvl, log_t, est, np.array(pidx, dtype=int), np.array(pmu), np.array(psig),
                    np.array(fg, dtype=float), np.array(fl, dtype=float),
                    np.array(cg, dtype=int), np.array(cl, dtype=int), warn, t_map=t_map)


# --- starting values -----------------------------------------------------------------

def _groups(prob: _Problem) -> list[tuple[list[int], set[int]]]:
    """Free resistors linked by shared channels: (free indices, channel indices)."""
    circ = prob.circ
    secs = circ.sections or {}
    chidx = {c: i for i, c in enumerate(circ.channels)}
    if not secs or any(r not in secs for r in prob.free):
        return [(list(range(len(prob.free))), set(range(len(circ.channels))))]
    groups: list[tuple[list[int], set[int]]] = []
    for k, r in enumerate(prob.free):
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
    g = np.exp(prob.logg)
    w = 2 * math.pi * prob.freq_g
    for c, ci in chidx.items():
        rs = [k for k, r in enumerate(prob.free) if secs.get(r, ("", ""))[0] == c]
        kinds = [secs[prob.free[k]][1] for k in rs]
        if not rs or len(set(kinds)) != len(kinds):
            continue
        sel = prob.chg == ci
        if sel.sum() < 3:
            continue
        gs, ws = g[sel], w[sel]
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
        A = np.stack(cols, 1) * (gs ** 2)[:, None]
        y = 1 - gs ** 2
        scale = np.abs(A).max(axis=0)
        scale[scale == 0] = 1
        try:
            sol = np.linalg.lstsq(A / scale, y, rcond=None)[0] / scale
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


def _grid_range(prob: _Problem, k: int) -> np.ndarray:
    """Coarse log grid for resistor k: 1 ohm..1 Mohm scaled by C, widened to the tones."""
    C = prob.caps[prob.free[k]]
    s = 1e-6 / C
    f = np.concatenate([prob.freq_g, prob.freq_l])
    lo = min(math.log(1.0 * s), -math.log(2 * math.pi * f.max() * 30 * C))
    hi = max(math.log(1e6 * s), -math.log(2 * math.pi * f.min() / 30 * C))
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
        cost, _, _ = sub.objective(th, sigma=sigma, s_gain=s_gain, use_prior=True, deriv=False)
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
    out: list[int] = []
    for c in chans:
        for lv in np.unique(prob.lvl[prob.chl == c]):
            sel = np.flatnonzero((prob.chl == c) & (prob.lvl == lv))
            sel = sel[np.argsort(prob.freq_l[sel], kind="stable")]
            sw = np.flatnonzero(prob.sgn[sel][1:] != prob.sgn[sel][:-1])
            out += sel[sw].tolist() + sel[sw + 1].tolist()
    return np.array(sorted(set(out)), dtype=np.int64)


def _subproblem(prob: _Problem, rows: np.ndarray) -> _Problem:
    """The same problem restricted to some rows (indices into the stacked rows)."""
    import torch

    rows = np.asarray(rows)
    g = rows[rows < prob.ng]
    lrows = rows[rows >= prob.ng] - prob.ng
    idx = torch.from_numpy(np.concatenate([g, lrows + prob.ng]).astype(np.int64))
    return _Problem(prob.circ, prob.caps, prob.free, prob.fixed, prob.model,
                    prob.omega[idx], prob.ch[idx], len(g), len(lrows), prob.logg[g],
                    prob.sgn[lrows], prob.lvl[lrows], prob.log_t, prob.est_t,
                    prob.prior_idx, prob.prior_mu, prob.prior_sig, prob.freq_g[g],
                    prob.freq_l[lrows], prob.chg[g], prob.chl[lrows])


def _default_base(prob: _Problem) -> np.ndarray:
    """Neutral values: 1 kohm at 1 uF (scaled by C), the middle of the coarse grid."""
    base = np.zeros(prob.npar)
    for k in range(len(prob.free)):
        base[k] = math.log(1e3 * 1e-6 / prob.caps[prob.free[k]])
    if prob.est_t:
        base[-1] = prob.log_t
    return base


# --- LED: data-consistent intervals --------------------------------------------------

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
    key = sub.chl * 4096 + np.unique(sub.lvl, return_inverse=True)[1]
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
    import torch

    B, n = sgn.shape
    q = len(ks)
    L, _ = model.logh(th, om, ch, jac=False)
    acc = valid & (sgn * (L - lt_acc) >= -1e-12)
    nrej = (valid & ~acc).sum(1)
    sys_b: list[int] = []
    sys_c: list[tuple] = []
    for b in range(B):
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
    S = len(sys_b)
    lo = np.full((B, q), math.inf)
    hi = np.full((B, q), -math.inf)
    if S:
        sb = np.array(sys_b)
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
            wt_ = torch.from_numpy(w)
            Lr, Jr = model.logh(full[w], oms[wt_], chs[wt_], jac=True)
            F = Lr - lts[w]
            Jx = Jr[..., ks]
            xw = x[w]
            for e in range(q):
                fw = isface[w, e]
                F[:, e] = np.where(fw, xw[np.arange(len(w)), facej[w, e]] - facev[w, e],
                                   F[:, e])
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
        good = np.flatnonzero(ok & ((x >= blo - 1e-9) & (x <= bhi + 1e-9)).all(1))
        # keep vertices that reproduce every accepted observation of their board
        feas = np.zeros(len(good), bool)
        for c0 in range(0, len(good), 4096):
            gi = good[c0:c0 + 4096]
            fb = sb[gi]
            fv = th[fb].copy()
            fv[:, ks] = x[gi]
            Lv, _ = model.logh(fv, om[torch.from_numpy(fb)], ch[torch.from_numpy(fb)],
                               jac=False)
            mv = sgn[fb] * (Lv - lt_reg[fb])
            feas[c0:c0 + 4096] = ((mv >= -1e-9) | ~acc[fb]).all(1)
        vi = good[feas]
        np.minimum.at(lo, sb[vi], x[vi])
        np.maximum.at(hi, sb[vi], x[vi])
    if include_hat:
        lo = np.minimum(lo, th[:, ks])
        hi = np.maximum(hi, th[:, ks])
    empty = ~(np.isfinite(lo).all(1) & np.isfinite(hi).all(1))
    lo = np.where(lo <= box_lo + 1e-6, -math.inf, lo)
    hi = np.where(hi >= box_hi - 1e-6, math.inf, hi)
    return lo, hi, nrej, empty


# --- notebook losses (teaching only) -------------------------------------------------

def _fit_notebook(prob: _Problem, loss: str, init: np.ndarray, lr: float, steps: int
                  ) -> tuple[np.ndarray, int, bool, float]:
    """The notebook's plain gradient descent on R in ohms, as printed in the course."""
    import torch

    p = len(prob.free)
    R = torch.tensor(np.exp(init[:p]), dtype=torch.float64, requires_grad=True)
    m = prob.model
    n = prob.ng + prob.nl
    target = np.concatenate([np.exp(prob.logg), (prob.sgn > 0).astype(float)])
    if loss == "notebook-weighted":
        target[prob.ng:] = 0.3 + 0.7 * target[prob.ng:]
    tgt = torch.from_numpy(target)
    omega, ch = prob.omega, prob.ch
    circ = prob.circ
    converged = False
    lval = math.inf
    it = 0
    for it in range(1, steps + 1):  # noqa: B007
        vals = dict(m.fixed)
        vals.update({name: R[k] for k, name in enumerate(prob.free)})
        out = circ.model(omega, vals, m.ct)
        H = torch.stack([torch.broadcast_to(out[c], (n,)) for c in circ.channels], -1)
        H = H.gather(-1, ch.unsqueeze(-1)).squeeze(-1)
        lo = ((H - tgt) ** 2).mean()
        (g,) = torch.autograd.grad(lo, R)
        lval = float(lo.detach())
        if lval < 1e-6 or float(g.norm()) < 1e-6:
            converged = True
            break
        with torch.no_grad():
            R -= lr * g
            R.clamp_(min=1e-9)
    return np.log(R.detach().numpy()), it, converged, lval


# --- the public API ------------------------------------------------------------------

def fit(data: MeasurementSet, circuit: Circuit | str, *, capacitance: Any = 1e-6,
        led_threshold: float | Mapping[str, float] | str = LED_THRESHOLD, loss: str = "auto",
        prior: Mapping[str, tuple[float, float]] | None = None,
        fixed: Mapping[str, float] | None = None,
        init: Mapping[str, float] | float | None = None,
        lr: float | None = None, steps: int | None = None) -> FitResult:
    """Fit the circuit's free resistors to ``data``.

    ``init`` (ohm, one value or per resistor) replaces the automatic starts: it exists to
    test the optimiser's basin, not because anyone should need it. ``lr``/``steps`` only
    apply to the notebook losses.
    """
    import torch

    t0 = time.perf_counter()
    nthreads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny tensors: threads cost more than they give
    try:
        return _fit(data, circuit, capacitance, led_threshold, loss, prior, fixed, init,
                    lr, steps, t0)
    finally:
        torch.set_num_threads(nthreads)


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


def _fit(data, circuit, capacitance, led_threshold, loss, prior, fixed, init, lr, steps,
         t0) -> FitResult:
    circ = get_circuit(circuit) if isinstance(circuit, str) else circuit
    if loss not in LOSSES:
        raise InputError(f"unknown loss '{loss}' (known: {', '.join(LOSSES)})")
    caps = capacitances(circ, capacitance)
    if led_threshold == "estimate-each":
        if loss != "auto":
            raise InputError("the notebook losses use a fixed LED threshold; do not combine "
                             "them with --led-threshold estimate-each")
        return _fit_each(data, circ, capacitance, prior, fixed, init, t0)
    prob = _build(data, circ, caps, led_threshold, prior, fixed)
    warns = list(prob.warnings)
    notes: list[str] = []
    p = len(prob.free)
    th_init = _init_theta(prob, init)

    if loss != "auto":
        if prob.est_t:
            raise InputError("the notebook losses use a fixed LED threshold (0.5 crossing); "
                             "do not combine them with --led-threshold estimate")
        lr_ = float(lr) if lr is not None else 200.0
        st = int(steps) if steps is not None else 100_000
        start = th_init if th_init is not None else np.array(
            [math.log(500.0 * 1e-6 / caps[r]) for r in prob.free])
        theta, iters, conv, lval = _fit_notebook(prob, loss, start, lr_, st)
        notes.append(f"teaching mode: plain gradient descent on R in ohms (lr {lr_:g}), "
                     f"final loss {lval:.3g}; no interval is computed")
        if not conv:
            warns.append(f"gradient descent stopped after {iters} steps without meeting the "
                         "notebook's stop rule (loss < 1e-6 or |grad| < 1e-6)")
        return _result(prob, theta, {}, {k: "none" for k in prob.free}, conv, iters,
                       t0, loss, loss, warns, notes)

    groups = _groups(prob)
    gain_ch = set(prob.chg.tolist())
    led_only = [(ks, ch) for ks, ch in groups if not (ch & gain_ch)]
    iters = 0
    converged = True
    gain_rms = 0.0

    if prob.nl and prob.est_t:
        _check_threshold_identifiable(prob, gain_ch)

    # 1) gain rows: LM on log error (also the pilot that sets the gain noise scale)
    s_gain = 1.0
    theta = th_init.copy() if th_init is not None else _default_base(prob)
    if prob.ng:
        gprob = _subproblem(prob, np.arange(prob.ng)) if prob.nl else prob
        if th_init is None:
            lin = _linear_start(prob)
            for k, v in lin.items():
                theta[k] = v
            missing = [k for k in range(p) if k not in lin]
            if missing:
                theta = _grid_starts(gprob, theta, 0.3, 1.0, top=1)[0]
        use_prior_first = not prob.nl and len(prob.prior_idx) == 0

        def gfun(th):
            return gprob.objective(th, use_prior=use_prior_first)

        theta_b, cost, A, done, it = _lm(gfun, theta[None])
        iters += it
        rms = math.sqrt(2 * cost[0] / max(prob.ng, 1))
        if rms > MISFIT_RMS and th_init is None:
            starts = [theta_b[0]] + _grid_starts(gprob, theta_b[0], 0.3, 1.0, top=3)
            tb, cb, Ab, db, itb = _lm(gfun, np.stack(starts))
            iters += itb
            best = int(np.argmin(cb))
            theta_b, cost, A, done = (x[best:best + 1] for x in (tb, cb, Ab, db))
            notes.append(f"first start left a {100 * rms:.1f}% rms misfit; best of "
                         f"{len(starts)} starts kept")
        theta = theta_b[0]
        converged &= bool(done[0])
        gain_rms = math.sqrt(2 * cost[0] / prob.ng)
        dof = max(prob.ng - _n_informed(A[0], prob.ng), 1)
        s_gain = max(math.sqrt(2 * cost[0] / dof), 1e-12)
        A = A / s_gain ** 2  # rows at unit noise
        if prob.nl or len(prob.prior_idx):
            # weighting gain rows against LED/prior terms: below ~1 ppm the residuals are
            # rounding noise, and dividing by it would make the cost itself noisy
            s_gain = max(s_gain, S_GAIN_FLOOR)
        if len(prob.prior_idx) and not prob.nl:
            # MAP: prior rows against gain rows scaled to unit noise
            theta_b, cost, A, done, it = _lm(
                lambda th: prob.objective(th, s_gain=s_gain), theta[None])
            iters += it
            theta = theta_b[0]
            converged &= bool(done[0])

    # 2) LED rows: probit with annealed noise scale, multi-start at the coarse stage
    method = "gauss-newton"
    if prob.nl:
        method = "joint" if prob.ng else "led-interval"
        # with a free threshold, wide smoothing prefers the stop-band power law (where R
        # and t trade off exactly): start finer
        sched = SIGMA_SCHEDULE[2:] if prob.est_t else SIGMA_SCHEDULE
        if th_init is not None:
            starts = [theta]
        else:
            starts = _grid_starts(prob, theta, sched[0], s_gain, top=3)
            if prob.ng:
                starts = [theta] + starts
        th_b = np.stack(starts)
        for si, sigma in enumerate(sched):
            sp = prob if si < 2 else _near_switch(prob, th_b, sigma)

            def fun(th, sigma=sigma, lapse=0.0 if si == 0 else LED_LAPSE, sp=sp):
                return sp.objective(th, sigma=sigma, s_gain=s_gain, lapse=lapse)
            last = si == len(sched) - 1
            tb, cb, Ab, db, it = _lm(fun, th_b, max_iter=40 if last else 25,
                                     xtol=1e-8 if last else 1e-4,
                                     ftol=1e-12 if last else 1e-8)
            iters += it
            if len(th_b) > 1 and (si >= 1 or last):
                # starts that misclassify what another start explains drop out; by the
                # last stage only the best remains
                keep = cb <= cb.min() + 10.0
                for i in range(len(cb)):  # twins (same basin) need not run twice
                    for j in range(i):
                        if keep[i] and keep[j] and np.abs(tb[i] - tb[j]).max() < 1e-2:
                            keep[i] = cb[i] < cb[j]
                            keep[j] = not keep[i]
                if last:
                    keep = np.arange(len(cb)) == int(np.argmin(cb))
                tb, cb, Ab, db = (x[keep] for x in (tb, cb, Ab, db))
            th_b = tb
            A, cost, done = Ab, cb, db
        theta = th_b[0]
        converged &= bool(done[0])

    # per channel only when some channel could be off: the gain-only fit's overall rms
    # bounds every channel's (the common case costs no extra model evaluation)
    misfit: dict[str, float] = {}
    if prob.ng and (prob.nl or len(prob.prior_idx) or gain_rms * math.sqrt(
            prob.ng / _fewest_rows(prob.chg)) > MISFIT_TRUST):
        misfit = _misfit_channels(prob, theta)
    if misfit:
        warns.append("the gains do not follow the circuit's model (rms misfit "
                     + ", ".join(f"{ch} {100 * v:.0f}%" for ch, v in misfit.items())
                     + "): check the wiring (outputs swapped?), --circuit and --capacitance;"
                     " the values are not to be used")

    # 3) uncertainty
    ci: dict[int, tuple[float, float]] = {}
    ci_method: dict[str, str] = {}
    cov, info_warn = _covariance(prob, A[0], led_only)
    warns += info_warn
    warns += _sensitivity_warnings(prob, theta, led_only, info_warn)
    for k in range(p):
        sd = math.sqrt(max(cov[k, k], 0.0)) if np.isfinite(cov[k, k]) else math.inf
        ci[k] = (theta[k] - Z95 * sd, theta[k] + Z95 * sd)
        ci_method[prob.free[k]] = "jacobian"
    n_rej = 0
    led_misfit: list[str] = []
    for ks, chans in led_only:
        if not np.isin(prob.chl, list(chans)).any():
            chn = ", ".join(prob.circ.channels[c] for c in sorted(chans))
            for k in ks:
                ci[k] = (-math.inf, math.inf)
                ci_method[prob.free[k]] = "none"
                warns.append(f"{prob.free[k]}: no usable rows on channel {chn}: the data do "
                             "not determine it; the value is a placeholder, not a fit")
            continue
        ivs, nr, msgs = _led_interval(prob, theta, ks, chans)
        n_rej += nr
        warns += msgs
        n_rows = int(np.isin(prob.chl, list(chans)).sum())
        if nr > max(2, LED_MISFIT_FRACTION * n_rows):
            # a misread LED is rare and sits next to a switch; this many is another signal
            led_misfit.append(f"{', '.join(prob.circ.channels[c] for c in sorted(chans))}: "
                              f"{nr} of {n_rows}")
        for k, iv in ivs.items():
            ci[k] = iv
            ci_method[prob.free[k]] = "data-consistent"
            theta[k] = _inside(iv, theta[k], _default_base(prob)[k])
    t_ci = None
    if prob.est_t and led_only and not prob.ng:
        t_ci, prof, t_open = _profile_threshold(prob, theta, led_only)
        for k, (lo, hi) in prof.items():
            ci[k] = (min(ci[k][0], lo), max(ci[k][1], hi))
        notes.append(f"LED threshold t_ref = {math.exp(theta[-1]):.4g} at 0 dBFS, shared by "
                     f"every LED (consistent range {math.exp(t_ci[0]):.4g}.."
                     f"{math.exp(t_ci[1]):.4g}); resistor intervals cover every threshold in "
                     "that range. LEDs of different colors need one threshold each "
                     "(--led-vf low=V,band=V,high=V)")
        if t_open:
            warns.append("the LED threshold is not pinned down by the data (its consistent "
                         "range reaches the search limit); add switches at another tone level")
    if any(m == "data-consistent" for m in ci_method.values()):
        names = ", ".join(k for k, m in ci_method.items() if m == "data-consistent")
        notes.append(f"{names}: the 95% interval is the data-consistent interval: every "
                     "value in it reproduces all accepted LED observations (exact, not "
                     "statistical)")
    if n_rej:
        notes.append(f"{n_rej} LED observation(s) disagree with the fit and were treated as "
                     "noise; intervals use the remaining observations")
    conflicts = []
    if t_ci is not None and n_rej and len(led_only) > 1:
        conflicts = _threshold_conflicts(data, prob, theta, led_only, t_ci, capacitance, prior)
    if conflicts:
        warns.append("the LEDs do not switch at one common threshold (" + "; ".join(conflicts)
                     + f"; all together: {math.exp(t_ci[0]):.4g}..{math.exp(t_ci[1]):.4g}), so "
                     "resistor values fitted with one estimated threshold are wrong: give "
                     "each LED's switching voltage (--led-vf low=V,band=V,high=V) or fit "
                     "amplitudes too (--mode both; a recorded session with amplitudes: "
                     "hostctl fit SESSION --led-threshold estimate-each)")
    if led_misfit:
        warns.append("LED observations contradict the circuit's model ("
                     + "; ".join(led_misfit) + " disagree with the fit): check the LED "
                     "wiring (D2 low, D3 band, D4 high) and --circuit; the values are not to "
                     "be used")
    res = _result(prob, theta, ci, ci_method, converged, iters, t0, method, "auto",
                  warns, notes)
    res.trusted = not conflicts and not misfit and not led_misfit
    if prob.est_t and prob.nl and prob.ng and set(prob.chl.tolist()) <= gain_ch:
        own, _ = _thresholds_per_led(prob, theta)
        if max(lo for lo, _ in own.values()) > min(hi for _, hi in own.values()):
            # no one threshold lets every LED switch where it did: each LED its own
            res.led_thresholds = {k: math.sqrt(lo * hi) for k, (lo, hi) in own.items()}
            notes.append("the LEDs switch at different thresholds; t_ref per LED at 0 dBFS "
                         "(from the fitted gains): " + ", ".join(
                             f"{k} {math.sqrt(lo * hi):.4g} ({lo:.4g}..{hi:.4g})"
                             for k, (lo, hi) in own.items()))
    if t_ci is not None:
        res.led_threshold_ci95 = (math.exp(t_ci[0]), math.exp(t_ci[1]))
    return res


def _fewest_rows(ch: np.ndarray) -> int:
    """Rows of the least-measured channel that has any."""
    counts = np.bincount(ch)
    return int(counts[counts > 0].min())


def _misfit_channels(prob: _Problem, theta: np.ndarray) -> dict[str, float]:
    """Channels whose gains the fitted model misses by more than ``MISFIT_TRUST`` rms (log).

    Noise does not do that (ADC noise near the floor is flagged before the fit); a wrong
    model does: swapped outputs, the wrong --circuit, a section wired differently."""
    if not prob.ng:
        return {}
    p = len(prob.free)
    L, _ = prob.model.logh(theta[None, :p], prob.omega[:prob.ng], prob.ch[:prob.ng], jac=False)
    r = L[0] - prob.logg
    out = {}
    for c in sorted(set(prob.chg.tolist())):
        rms = float(np.sqrt(np.mean(r[prob.chg == c] ** 2)))
        if rms > MISFIT_TRUST:
            out[prob.circ.channels[c]] = rms
    return out


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


def _fit_each(data: MeasurementSet, circ: Circuit, capacitance: Any,
              prior: Mapping[str, tuple[float, float]] | None,
              fixed: Mapping[str, float] | None, init: Any, t0: float) -> FitResult:
    """One threshold per LED (a red, a green and a blue LED differ), measured where gains
    fix the response: the components from the gains alone, then each LED's threshold from
    the gap between its dark and lit tones (:func:`_thresholds_per_led`)."""
    from dataclasses import replace

    gain_rows = [replace(m, led=None) for m in data.rows if m.gain is not None]
    led_rows = [replace(m, gain=None) for m in data.rows if _usable(m, "led")]
    if not gain_rows:
        raise FitError("estimating one threshold per LED needs gain data on the LED channels "
                       "(--mode both); with LED data only give each LED's threshold or "
                       "voltage, or estimate one shared threshold")
    res = _fit(MeasurementSet(gain_rows, dict(data.meta)), circ, capacitance, LED_THRESHOLD,
               "auto", prior, fixed, init, None, None, t0)
    if not led_rows:
        return res
    prob = _build(MeasurementSet(led_rows, dict(data.meta)), circ, res.capacitance,
                  "estimate", None, fixed)
    missing = sorted({circ.channels[c] for c in prob.chl} - {m.channel for m in gain_rows
                                                            if m.gain_usable})
    if missing:
        raise FitError(f"no usable gain data on channel {', '.join(missing)}: its LED's "
                       "threshold cannot be measured from its switches alone")
    theta = np.log([res.values[r] for r in prob.free])
    ranges, wrong = _thresholds_per_led(prob, theta)
    bad = {ch: (w, n) for ch, (w, n) in wrong.items() if w > max(2, LED_MISFIT_FRACTION * n)}
    if bad:
        res.trusted = False
        res.warnings.append("LED observations contradict the fitted gains ("
                            + "; ".join(f"{ch}: {w} of {n}" for ch, (w, n) in bad.items())
                            + " fit no threshold): check the LED wiring (D2 low, D3 band, "
                            "D4 high); the thresholds are not to be used")
    res.led_threshold, res.led_threshold_estimated = None, True
    res.led_thresholds = {}
    res.led_thresholds_ci95 = ranges
    res.n_led = prob.nl
    res.method = f"{res.method} + per-LED thresholds"
    for ch, (lo, hi) in ranges.items():
        if lo > 0 and math.isfinite(hi):
            res.led_thresholds[ch] = math.sqrt(lo * hi)
            continue
        res.led_thresholds[ch] = lo if lo > 0 else hi
        bound = f"above {lo:.4g}" if lo > 0 else f"below {hi:.4g}"
        res.warnings.append(f"LED {ch} was {'always lit' if lo == 0 else 'never lit'} at the "
                            f"measured tones: its threshold is only bounded ({bound})")
    res.notes.append("LED thresholds t_ref per LED at 0 dBFS, from the fitted gains and each "
                     "LED's switches: " + ", ".join(
                         f"{k} {res.led_thresholds[k]:.4g} ({lo:.4g}..{hi:.4g})"
                         for k, (lo, hi) in ranges.items()))
    res.seconds = time.perf_counter() - t0
    return res


def _threshold_conflicts(data: MeasurementSet, prob: _Problem, theta: np.ndarray,
                         led_only: list, t_ci: tuple[float, float], capacitance: Any,
                         prior: Mapping[str, tuple[float, float]] | None) -> list[str]:
    """Channels whose LED alone needs a threshold outside the shared one's consistent range.

    One shared threshold is the right model for LEDs of one type and the wrong one for a
    red, a green and a blue LED: then some switches contradict it (they show up as rejected
    observations). Each channel that switches at two levels is refitted alone, from the
    shared estimate, with its own threshold; disjoint consistent ranges mean the LEDs
    differ.
    """
    p = len(prob.free)
    names = prob.circ.channels
    out = []
    for ks, chans in led_only:
        keep = {names[c] for c in chans}
        sub = MeasurementSet([m for m in data.rows if m.channel in keep], dict(data.meta))
        own = {prob.free[k] for k in ks}
        hold = dict(prob.fixed)
        hold.update({prob.free[k]: math.exp(theta[k]) for k in range(p) if prob.free[k] not in own})
        try:
            r = _fit(sub, prob.circ, capacitance, "estimate", "auto", prior, hold,
                     {n: math.exp(theta[prob.free.index(n)]) for n in own}, None, None,
                     time.perf_counter())
        except FitError:
            continue  # not identifiable alone (switches at one level only)
        lo, hi = r.led_threshold_ci95 or (0.0, math.inf)
        if hi < math.exp(t_ci[0]) or lo > math.exp(t_ci[1]):
            out.append(f"{', '.join(sorted(keep))} alone: {lo:.4g}..{hi:.4g}")
    return out


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


def _n_informed(A: np.ndarray, n: int) -> int:
    """Parameters the rows actually inform (Jacobian column not ~0)."""
    return int((np.diag(A) > 1e-16 * max(1, n)).sum())


def _covariance(prob: _Problem, A: np.ndarray, led_only: list) -> tuple[np.ndarray, list[str]]:
    """Inverse of the unit-noise Gauss-Newton Hessian (J^T J for gain rows), plus plain
    warnings for what it cannot see."""
    p = len(prob.free)
    led_k = {k for ks, _ in led_only for k in ks}
    warn: list[str] = []
    P = A.shape[0]
    colnorm = np.sqrt(np.maximum(np.diag(A), 0))
    info = colnorm > 1e-6 * max(1.0, colnorm.max())
    cov = np.full((P, P), np.inf)
    idx = np.flatnonzero(info)
    if len(idx):
        sub = A[np.ix_(idx, idx)]
        d = np.sqrt(np.diag(sub))
        corr = sub / np.outer(d, d)
        cond = np.linalg.cond(corr)
        cov[np.ix_(idx, idx)] = np.linalg.pinv(corr) / np.outer(d, d)
        if cond > 1e10:
            names = [prob.free[i] for i in idx if i < p and i not in led_k]
            if names:
                warn.append(f"{', '.join(names)} are confounded (condition number {cond:.1e}):"
                            " the data cannot tell them apart; intervals are not reliable")
    for k in range(p):
        if k in led_k:
            continue
        name = prob.free[k]
        if not info[k]:
            warn.append(f"{name}: the data do not determine it (no tones where it changes the "
                        "response); the value is only a starting guess")
        elif np.isfinite(cov[k, k]) and math.sqrt(max(cov[k, k], 0)) > 0.35:
            f = math.exp(Z95 * math.sqrt(cov[k, k]))
            warn.append(f"{name}: poorly determined by the data (95% interval spans a factor "
                        f"{f:.3g} either way); add tones near its corner")
    return cov, warn


def _sensitivity_warnings(prob: _Problem, theta: np.ndarray, led_only: list,
                          already: list[str]) -> list[str]:
    """Warn about resistors that barely change the response at any measured gain tone.

    With exact data even a tiny sensitivity pins a value down (the interval is then
    ~0 wide and honest), but a real bench is not exact: say so plainly."""
    if not prob.ng:
        return []
    p = len(prob.free)
    _, J = prob.model.logh(theta[None, :p], prob.omega[:prob.ng], prob.ch[:prob.ng])
    sens = np.abs(J[0]).max(0)
    led_k = {k for ks, _ in led_only for k in ks}
    out = []
    for k in range(p):
        name = prob.free[k]
        if k in led_k or any(w.startswith(name + ":") for w in already):
            continue
        if sens[k] < 0.01:
            out.append(f"{name}: no measured tone is near its corner (a 1% change moves the "
                       f"response by at most {sens[k]:.1e}%); add tones near "
                       f"{prob.circ.corner_hz(name, math.exp(theta[k]), prob.caps):.4g} Hz")
    return out


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


def _result(prob: _Problem, theta: np.ndarray, ci: dict[int, tuple[float, float]],
            ci_method: dict[str, str], converged: bool, iters: int, t0: float, method: str,
            loss: str, warns: list[str], notes: list[str]) -> FitResult:
    circ = prob.circ
    values: dict[str, float] = {}
    cis: dict[str, tuple[float, float]] = {}
    for r in circ.resistors:
        if r in prob.fixed:
            values[r] = float(prob.fixed[r])
            cis[r] = (values[r], values[r])
            ci_method[r] = "fixed"
        else:
            k = prob.free.index(r)
            values[r] = float(math.exp(theta[k]))
            if k in ci:
                lo, hi = ci[k]
                cis[r] = (math.exp(lo) if lo > -700 else 0.0,
                          math.exp(hi) if hi < 700 else math.inf)
            else:
                cis[r] = (math.nan, math.nan)
    ordered = {r: ci_method.get(r, "none") for r in circ.resistors}
    corner = {r: circ.corner_hz(r, values[r], prob.caps) for r in circ.resistors}
    thr = None
    if prob.t_map is not None:
        pass  # per channel: led_thresholds
    elif prob.est_t:
        thr = float(math.exp(theta[len(prob.free)]))
    elif prob.log_t is not None:
        thr = float(math.exp(prob.log_t))
    return FitResult(circuit=circ.name, values=values, ci95=cis, corner_hz=corner,
                     capacitance=dict(prob.caps), converged=bool(converged), iterations=iters,
                     seconds=time.perf_counter() - t0, method=method, loss=loss,
                     led_threshold=thr, led_threshold_estimated=prob.est_t,
                     led_thresholds=None if prob.t_map is None else dict(prob.t_map),
                     warnings=warns, n_gain=prob.ng, n_led=prob.nl, notes=notes,
                     ci_method=ordered)


# --- many boards at once -------------------------------------------------------------

def fit_many(datasets: Sequence[MeasurementSet], circuit: Circuit | str, *,
             capacitance: Any = 1e-6,
             led_threshold: float | Mapping[str, float] | str = LED_THRESHOLD,
             **kw: Any) -> list[FitResult]:
    """Fit many boards (same circuit) at once: a batch dimension through the model and a
    block-diagonal LM. Gain-only boards and LED-only boards (fixed threshold) are
    batched; priors, fixed values, an estimated threshold or boards with both kinds of
    rows go through :func:`fit` one by one."""
    import torch

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
            dof = max(m - _n_informed(A[b], m), 1)
            s = max(math.sqrt(2 * cost[b] / dof), 1e-12)
            cov, warns = _covariance(pr, A[b] / s ** 2, [])
            ci = {}
            for k in range(p):
                sd = math.sqrt(max(cov[k, k], 0.0)) if np.isfinite(cov[k, k]) else math.inf
                ci[k] = (theta[b, k] - Z95 * sd, theta[b, k] + Z95 * sd)
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


def parse_prior(text: str) -> tuple[str, tuple[float, float]]:
    """``R_low=220@5%`` (or ``2.2k@0.05``) -> ("R_low", (220.0, 0.05)): sigma on log R."""
    if "=" not in text or "@" not in text:
        raise InputError(f"--prior: '{text}' should be NAME=OHMS@SIGMA (e.g. R_low=220@5%)")
    name, rest = (s.strip() for s in text.split("=", 1))
    val, sig = (s.strip() for s in rest.split("@", 1))
    mult = 1.0
    if val[-1:] in ("k", "K", "M"):
        mult = 1e3 if val[-1] in "kK" else 1e6
        val = val[:-1]
    try:
        v = float(val) * mult
        s = float(sig[:-1]) / 100 if sig.endswith("%") else float(sig)
    except ValueError:
        raise InputError(f"--prior: '{text}' should be NAME=OHMS@SIGMA (e.g. R_low=220@5%)"
                         ) from None
    if not (math.isfinite(v) and v > 0 and math.isfinite(s) and s > 0):
        raise InputError(f"--prior: '{text}' needs a positive value and a positive sigma")
    return name, (v, s)


def jacobian_reference(prob_data: MeasurementSet, circuit: Circuit | str,
                       values: Mapping[str, float], capacitance: Any = 1e-6
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(fast per-row-copy Jacobian, torch.autograd.functional.jacobian) of log|H| in log R,
    for tests: the two must agree to rounding."""
    import torch

    circ = get_circuit(circuit) if isinstance(circuit, str) else circuit
    caps = capacitances(circ, capacitance)
    prob = _build(prob_data, circ, caps, LED_THRESHOLD, None, None, use_led=False)
    th = np.array([math.log(values[r]) for r in prob.free])
    _, J = prob.model.logh(th[None], prob.omega, prob.ch, jac=True)

    def f(t: torch.Tensor) -> torch.Tensor:
        R = {r: t[k].exp() for k, r in enumerate(prob.free)}
        out = circ.model(prob.omega, R, prob.model.ct)
        H = torch.stack([torch.broadcast_to(out[c], prob.omega.shape) for c in circ.channels],
                        -1)
        return H.gather(-1, prob.ch.unsqueeze(-1)).squeeze(-1).log()

    Jref = torch.autograd.functional.jacobian(f, torch.from_numpy(th)).numpy()
    return J[0], Jref


__all__ = ["FitResult", "fit", "fit_many", "parse_prior", "LOSSES"]
