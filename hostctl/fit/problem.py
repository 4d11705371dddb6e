"""A fit problem built from a MeasurementSet: rows as arrays, the likelihood."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.circuits import LED_THRESHOLD, Circuit
from hostctl.dataset import MeasurementSet
from hostctl.errors import FitError, InputError
from hostctl.fit.model import _Model, shared_model
from hostctl.fit.rows import _columns, _rowerror, _Rows, _usable  # noqa: F401 (re-exported)
from hostctl.fit.settings import LED_LAPSE, LN10_20, MEASURED_C
from hostctl.values import ohms

if TYPE_CHECKING:
    pass


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
    #: per gain row, the measured noise of log(gain) (the probe's own ``gain_se / gain``);
    #: None when the data carry no noise figures (then one scale comes from the residuals)
    sg: np.ndarray | None = None
    #: per LED row, its group (tone level): switches are found between neighbours in one
    grp: np.ndarray | None = None
    #: per-channel switching voltages when LED rows are judged on volts (``lvl`` holds
    #: ``log V - log vin`` per row), else None
    vf: dict[str, float] | None = None
    #: many gain rows as sufficient statistics on a frequency grid (hostctl.fit.gaingrid);
    #: None: every gain row is evaluated
    grid: Any = None
    #: the estimated threshold is a switching voltage (``lvl`` = -log vin per row), not
    #: a threshold on |H| relative to 0 dBFS
    est_volts: bool = False

    def _points(self) -> tuple[Any, Any, int]:
        """Where the model is evaluated: the gain rows (or the grid's nodes standing for
        them), then the LED rows; and how many of those points are gain points."""
        if self.grid is None:
            return self.omega, self.ch, self.ng
        import torch

        return (torch.cat([self.grid.omega, self.omega[self.ng:]]),
                torch.cat([self.grid.ch, self.ch[self.ng:]]), self.grid.size)

    def gain_logh(self, theta: np.ndarray) -> np.ndarray:
        """log|H| at every gain row for the parameters ``theta`` (p,)."""
        if self.grid is None:
            L, _ = self.model.logh(theta[None], self.omega[:self.ng], self.ch[:self.ng],
                                   jac=False)
            return L[0]
        L, _ = self.model.logh(theta[None], self.grid.omega, self.grid.ch, jac=False)
        return self.grid.row_values(L[0])

    def gain_sensitivity(self, theta: np.ndarray) -> np.ndarray:
        """Largest |d log|H| / d log R| over the gain rows, per parameter."""
        if self.grid is None:
            _, J = self.model.logh(theta[None], self.omega[:self.ng], self.ch[:self.ng])
            return np.abs(J[0]).max(0)
        _, J = self.model.logh(theta[None], self.grid.omega, self.grid.ch)
        return self.grid.max_abs_nodes(J[0])

    def groups(self) -> np.ndarray:
        """Group id per LED row (tone level; from ``lvl`` when not given)."""
        if self.grp is not None:
            return self.grp
        return np.unique(self.lvl, return_inverse=True)[1]

    @property
    def noise_known(self) -> bool:
        return self.sg is not None

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
        from hostctl.fit.special import log_ndtr

        p = len(self.free)
        B, P = theta.shape
        omega, ch, ne = self._points()
        L, JL = self.model.logh(theta[:, :p], omega, ch, deriv)
        cost = np.zeros(B)
        g = np.zeros((B, P)) if deriv else None
        A = np.zeros((B, P, P)) if deriv else None
        if self.ng and self.grid is not None:
            c, gg, AA = self.grid.terms(L[:, :ne], JL[:, :ne] if deriv else None, s_gain)
            cost += c
            if deriv:
                g[:, :p] += gg
                A[:, :p, :p] += AA
        elif self.ng:
            scale = s_gain if self.sg is None else s_gain * self.sg
            r = (L[:, :self.ng] - self.logg) / scale
            cost += 0.5 * np.einsum("bn,bn->b", r, r)
            if deriv:
                Jg = JL[:, :self.ng] / (scale if self.sg is None else scale[..., None])
                Jgt = Jg.transpose(0, 2, 1)
                g[:, :p] += (Jgt @ r[..., None])[..., 0]
                A[:, :p, :p] += Jgt @ Jg
        if self.nl:
            logt = (theta[:, p:p + 1] if self.est_t else self.log_t) + self.lvl
            z = self.sgn * (L[:, ne:] - logt) / sigma
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
                dz[..., :p] = (self.sgn / sigma)[..., None] * JL[:, ne:]
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


@dataclass(frozen=True)
class SwitchVoltage:
    """LEDs judged on volts: lit iff ``|H(f)| * vin(f) > volts`` with each row's measured
    reference amplitude ``vin_v`` (one voltage for every LED, or one per channel). The
    reference sags with frequency (three filters hang on one sound-card output), so one
    |H| threshold from a typical amplitude would misplace every switch."""

    #: volts, or ``"estimate"`` / ``"estimate-each"``: switching voltages measured from the
    #: switches themselves (one shared, or one per LED from the gains), still on volts
    volts: float | Mapping[str, float] | str

    @property
    def estimated(self) -> bool:
        return isinstance(self.volts, str)

    def of(self, channel: str) -> float:
        v = self.volts
        return float(v[channel]) if isinstance(v, Mapping) else float(v)


def nuisances(circ: Circuit) -> dict[str, tuple[float, float]]:
    """The circuit's nuisance parameters as log-normal priors: name -> (nominal, sigma of
    log), the tolerance taken as one sigma (a wide prior: the data narrow it)."""
    out = {}
    for name, n in (getattr(circ, "nuisance", None) or {}).items():
        if n.nominal > 0:
            out[name] = (float(n.nominal), math.log1p(max(n.relative, 1e-6)))
    return out


def _volts(thr: SwitchVoltage, circ: Circuit, chidx: Mapping[str, int], cl: np.ndarray,
           vl: np.ndarray, lmask: np.ndarray) -> tuple[dict[str, float], np.ndarray]:
    """Per-channel volts and each LED row's offset ``log V - log vin``."""
    vf = {}
    for c in sorted({circ.channels[i] for i in cl}):
        try:
            vf[c] = thr.of(c)
        except KeyError:
            raise InputError(f"no LED switching voltage for channel {c}") from None
        if not (math.isfinite(vf[c]) and vf[c] > 0):
            raise InputError(f"LED switching voltage for {c} must be a positive number of "
                             f"volts, got {vf[c]}")
    if isinstance(thr.volts, Mapping):
        for c in thr.volts:
            if c not in chidx:
                raise InputError(f"LED switching voltage for '{c}': not a channel of "
                                 f"{circ.name} ({', '.join(circ.channels)})")
    bad = np.flatnonzero(~(np.isfinite(vl) & (vl > 0)))
    if len(bad):
        raise _rowerror("judging LEDs on volts needs the reference amplitude vin_v on every "
                        "LED row (give an |H| threshold for data without it)",
                        int(np.flatnonzero(lmask)[bad[0]]), "vin_v")
    lvl = np.log([vf[circ.channels[i]] for i in cl]) - np.log(vl)
    return vf, np.asarray(lvl, dtype=float)


def _led_offsets(led_threshold: Any, circ: Circuit, rows: _Rows, est: bool
                 ) -> tuple[np.ndarray, float, dict[str, float] | None, dict[str, float] | None]:
    """Each LED row's threshold as ``log t + lvl``: (lvl, log t, per-channel |H|
    thresholds or None, per-channel volts or None)."""
    chidx = {c: i for i, c in enumerate(circ.channels)}
    cl = rows.cl
    if isinstance(led_threshold, str) and not est:
        raise InputError(f"led_threshold must be a number or 'estimate', got '{led_threshold}'")
    if isinstance(led_threshold, SwitchVoltage) and led_threshold.estimated:
        # one unknown switching voltage against each row's own reference amplitude
        probe = SwitchVoltage(1.0)
        _, lvl = _volts(probe, circ, chidx, cl, rows.vin, rows.lmask)
        vin = np.exp(-lvl)
        return lvl, math.log(LED_THRESHOLD * float(np.median(vin))) if len(vin) else 0.0, \
            None, None
    if isinstance(led_threshold, SwitchVoltage):
        vf, lvl = _volts(led_threshold, circ, chidx, cl, rows.vin, rows.lmask)
        return lvl, 0.0, None, vf
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
        return np.log(np.array([t_map[circ.channels[c]] for c in cl], dtype=float)), 0.0, \
            t_map, None
    if not est:
        t = float(led_threshold)
        if not (math.isfinite(t) and t > 0):
            raise InputError(f"LED threshold must be a positive number, got {led_threshold}")
        return np.zeros(len(rows.fl)), math.log(t), None, None
    lv = np.array(rows.level, dtype=float)
    log_t = math.log(LED_THRESHOLD) + (float(np.median(lv)) * LN10_20 if len(lv) else 0.0)
    return -lv * LN10_20, log_t, None, None


def _free_and_priors(circ: Circuit, fixed: Mapping[str, float], prior: Any, has_gain: bool
                     ) -> tuple[list[str], list[int], list[float], list[float]]:
    """The fitted parameters (resistors, then nuisances where gains can see them) and the
    priors on them: (free, prior index, log mean, sigma of log)."""
    nuis = nuisances(circ)
    for k, v in fixed.items():
        if k not in circ.resistors and k not in nuis:
            raise InputError(f"fixed: '{k}' is not a resistor of {circ.name} "
                             f"({', '.join(circ.resistors)})")
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"fixed: {k} must be a positive resistance, got {v}")
    free = [r for r in circ.resistors if r not in fixed]
    if not free:
        raise FitError("every resistor is fixed: nothing to fit")
    pidx: list[int] = []
    pmu: list[float] = []
    psig: list[float] = []
    if has_gain:
        # nuisance parts (ESR, ...) move only where gains can see them, held by their prior
        for k, (mu, sig) in nuis.items():
            if k not in fixed:
                free.append(k)
                pidx.append(len(free) - 1)
                pmu.append(math.log(mu))
                psig.append(sig)
    for k, spec in (prior or {}).items():
        if k not in circ.resistors:
            raise InputError(f"prior: '{k}' is not a resistor of {circ.name} "
                             f"({', '.join(circ.resistors)})")
        mu, sig = (float(spec[0]), float(spec[1]))
        if not (math.isfinite(mu) and mu > 0 and math.isfinite(sig) and sig > 0):
            raise InputError(f"prior for {k}: need a positive value and a positive sigma, "
                             f"got {spec}")
        if k not in fixed:
            pidx.append(free.index(k))
            pmu.append(math.log(mu))
            psig.append(sig)
    return free, pidx, pmu, psig


def measured_capacitors(prob: _Problem, capacitance: Any) -> None:
    """Capacitors the user names (``C_low=...``: measured on the bench) are as built:
    their ``S_x`` prior narrows from the part's tolerance to a meter's (``MEASURED_C``).
    Values from a netlist or one for all sections keep the tolerance."""
    if not isinstance(capacitance, Mapping):
        return
    named = {k[2:].lower() for k in capacitance if str(k)[:2].upper() == "C_"}
    for i, k in enumerate(prob.prior_idx):
        name = prob.free[k]
        if name.startswith("S_") and name[2:].lower() in named:
            prob.prior_sig[i] = math.log1p(MEASURED_C)


def _build(data: MeasurementSet, circ: Circuit, caps: dict[str, float],
           led_threshold: float | Mapping[str, float] | str | SwitchVoltage,
           prior: Mapping[str, tuple[float, float]] | None,
           fixed: Mapping[str, float] | None, use_gain: bool = True,
           use_led: bool = True) -> _Problem:
    """The fit problem: validated columns, each LED row's threshold, the parameters."""
    import torch

    fixed = dict(fixed or {})
    est_volts = isinstance(led_threshold, SwitchVoltage) and led_threshold.volts == "estimate"
    est = led_threshold == "estimate" or est_volts
    # parameters first: a wrong name is reported before anything about the rows
    _free_and_priors(circ, fixed, prior, True)
    rows = _columns(data, circ, est, use_gain, use_led)
    free, pidx, pmu, psig = _free_and_priors(circ, fixed, prior, len(rows.fg) > 0)
    lvl, log_t, t_map, vf = _led_offsets(led_threshold, circ, rows, est)
    # LED rows group by tone level (switches are neighbours in frequency within a group)
    grp = (np.unique(np.nan_to_num(rows.level, nan=0.0), return_inverse=True)[1]
           if len(rows.level) else np.zeros(0, dtype=np.int64))
    omega = np.concatenate([rows.fg, rows.fl])
    omega *= 2 * math.pi     # in place: a big file's rows are not held twice
    omega = torch.from_numpy(omega)
    ch = torch.from_numpy(np.concatenate([rows.cg, rows.cl], dtype=np.int64))
    return _Problem(circ, caps, free, fixed, shared_model(circ, caps, free, fixed), omega, ch,
                    len(rows.fg), len(rows.fl), rows.logg,
                    np.where(rows.yl > 0, 1.0, -1.0), lvl, log_t, est,
                    np.array(pidx, dtype=int), np.array(pmu), np.array(psig), rows.fg,
                    rows.fl, rows.cg, rows.cl, rows.warnings, t_map=t_map, sg=rows.sg,
                    grp=grp, vf=vf, grid=rows.grid, est_volts=est_volts)



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
                    prob.freq_l[lrows], prob.chg[g], prob.chl[lrows],
                    sg=None if prob.sg is None else prob.sg[g],
                    grp=None if prob.grp is None else prob.grp[lrows], vf=prob.vf,
                    grid=prob.grid if _all_rows(g, prob.ng) else None,
                    est_volts=prob.est_volts)


def _all_rows(g: np.ndarray, n: int) -> bool:
    """``g`` is every one of ``n`` rows, in order (a grid then still stands for them)."""
    return len(g) == n and bool(np.all(g == np.arange(n)))


def parse_prior(text: str) -> tuple[str, tuple[float, float]]:
    """``R_low=220@5%`` (or ``2.2k@0.05``) -> ("R_low", (220.0, 0.05)): sigma on log R."""
    if "=" not in text or "@" not in text:
        raise InputError(f"{{prior}}: '{text}' should be NAME=OHMS@SIGMA (e.g. R_low=220@5%)"
                         ).naming()
    name, rest = (s.strip() for s in text.split("=", 1))
    val, sig = (s.strip() for s in rest.split("@", 1))
    try:
        v = ohms(val)
        s = float(sig[:-1]) / 100 if sig.endswith("%") else float(sig)
    except ValueError:
        raise InputError(f"{{prior}}: '{text}' should be NAME=OHMS@SIGMA (e.g. R_low=220@5%)"
                         ).naming() from None
    if not (math.isfinite(v) and v > 0 and math.isfinite(s) and s > 0):
        raise InputError(f"{{prior}}: '{text}' needs a positive value and a positive sigma"
                         ).naming()
    return name, (v, s)


#: public names for peers that run the same problem (benchmarks against scipy)
build_problem = _build


def jacobian_reference(prob_data: MeasurementSet, circuit: Circuit | str,
                       values: Mapping[str, float], capacitance: Any = 1e-6
                       ) -> tuple[np.ndarray, np.ndarray]:
    """(the fit model's Jacobian, torch autograd's through the torch solver) of log|H| in
    log R, for tests: the two must agree to rounding."""
    import torch

    from hostctl.circuits import capacitances, get_circuit

    circ = get_circuit(circuit) if isinstance(circuit, str) else circuit
    caps = capacitances(circ, capacitance)
    held = {k: mu for k, (mu, _) in nuisances(circ).items()}  # nuisances at their nominal
    prob = _build(prob_data, circ, caps, LED_THRESHOLD, None, held, use_led=False)
    th = np.array([math.log(values[r]) for r in prob.free])
    _, J = prob.model.logh(th[None], prob.omega, prob.ch, jac=True)

    # each row its own copy of the parameters: one backward pass of the sum gives every row's
    # gradient (a row depends only on its own copy), not one backward pass per row
    t = torch.from_numpy(np.repeat(th[None], prob.omega.shape[0], 0)).requires_grad_(True)
    R = {r: t[:, k].exp() for k, r in enumerate(prob.free)}
    out = circ.model(prob.omega, R, prob.model.ct)
    H = torch.stack([torch.broadcast_to(out[c], prob.omega.shape) for c in circ.channels], -1)
    H.gather(-1, prob.ch.unsqueeze(-1)).squeeze(-1).abs().log().sum().backward()
    Jref = t.grad.numpy()
    return J[0], Jref
