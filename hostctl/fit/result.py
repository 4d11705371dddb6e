"""What a fit returns: values, 95 % intervals, verdict, and its JSON form."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.circuits import get_circuit
from hostctl.dataset import atomic_write_json
from hostctl.errors import InputError

if TYPE_CHECKING:
    from hostctl.fit.problem import _Problem
    pass


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
    #: gain rows' chi-square at the fit and its degrees of freedom (None without gains)
    chi2: float | None = None
    dof: int = 0
    #: sum of squared prior residuals at the fit (nuisances, user priors): a topology that
    #: needs a nuisance far outside its prior pays for it here
    prior_chi2: float = 0.0
    #: where the gain noise came from: "measured" (the probe's figures), "estimated" (from
    #: the residuals), "none"
    noise: str = "none"
    #: the topology the data chose, and the rejected alternatives' misfit in sigma
    topology: dict[str, Any] | None = None
    #: nuisance parts fitted under their priors (ESR, ...): name -> (value, lo, hi)
    nuisance: dict[str, tuple[float, float, float]] = field(default_factory=dict)
    #: per-LED switching voltages when LED rows were judged on volts (|H| * vin > V)
    led_vf: dict[str, float] | None = None

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
            "chi2": None if self.chi2 is None else float(self.chi2), "dof": int(self.dof),
            "prior_chi2": float(self.prior_chi2),
            "noise": self.noise, "topology": self.topology,
            "nuisance": {k: [num(v) for v in t] for k, t in self.nuisance.items()},
            "led_vf": self.led_vf,
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
            chi2=d.get("chi2"), dof=int(d.get("dof", 0)),
            prior_chi2=float(d.get("prior_chi2", 0.0)), noise=d.get("noise", "none"),
            topology=d.get("topology"), led_vf=d.get("led_vf"),
            nuisance={k: tuple(math.inf if v is None else float(v) for v in t)
                      for k, t in (d.get("nuisance") or {}).items()},
            led_thresholds_ci95=(None if d.get("led_thresholds_ci95") is None else
                                 {k: (float(lo), math.inf if hi is None else float(hi))
                                  for k, (lo, hi) in d["led_thresholds_ci95"].items()}),
        )


def _result(prob: _Problem, theta: np.ndarray, ci: dict[int, tuple[float, float]],
            ci_method: dict[str, str], converged: bool, iters: int, t0: float, method: str,
            loss: str, warns: list[str], notes: list[str]) -> FitResult:
    """The FitResult of a solved problem: values and intervals back in ohms, the
    threshold as fitted or given."""
    import time

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
    nuisance = {}
    for k, name in enumerate(prob.free):
        if name not in circ.resistors:
            lo, hi = ci.get(k, (-math.inf, math.inf))
            nuisance[name] = (float(math.exp(theta[k])), math.exp(lo) if lo > -700 else 0.0,
                              math.exp(hi) if hi < 700 else math.inf)
    ordered = {r: ci_method.get(r, "none") for r in circ.resistors}
    corner = {r: circ.corner_hz(r, values[r], prob.caps) for r in circ.resistors}
    thr = None
    if prob.vf is not None or prob.t_map is not None:
        pass  # judged on volts (FitResult.led_vf), or per channel (led_thresholds)
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
                     ci_method=ordered, nuisance=nuisance,
                     led_vf=None if prob.vf is None else dict(prob.vf))
