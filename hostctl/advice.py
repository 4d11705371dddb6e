"""The one recommendation path: fit -> parts -> predicted LED bands -> verdict.

``hostctl calibrate``, ``hostctl fit``, ``hostctl report`` and ``hostctl design`` all call
:func:`advise`, so the same session (or the same target) gives the same parts whichever
command asks. It also defines the versioned JSON of a fit result (:func:`fit_json`), the
one shape used by ``fit --json`` and by report.json's ``fit`` block.

No torch here: ``design`` calls this and must start fast; a fit result arrives already made.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hostctl.circuits import LED_THRESHOLD, Circuit, Threshold, capacitances
from hostctl.errors import InputError
from hostctl.recommend import Design, check_bands, design, design_for_led, led_map
from hostctl.target import Target, parse_target

if TYPE_CHECKING:
    from hostctl.fit import FitResult

#: version of a fit result's JSON (FitResult.to_json() plus this key)
FIT_SCHEMA = "hostctl-fit/1"
#: inferred capacitors further than this factor from nominal point at a wrong --installed
CAP_PLAUSIBLE = 1.5
CHOSEN_FOR = {"corners": "parts chosen for the target's corners",
              "led": "parts chosen so each LED switches mid-gap of the target's LED bands "
                     "(not for the corners)"}


def fit_json(fit: FitResult) -> dict[str, Any]:
    """The versioned JSON of a fit result (``"schema": "hostctl-fit/1"``)."""
    return {"schema": FIT_SCHEMA, **fit.to_json()}


def precision(fit: FitResult) -> dict[str, float]:
    """Relative half-width of each component's 95% interval (inf where it is open)."""
    out = {}
    for r, v in fit.values.items():
        lo, hi = fit.ci95[r]
        out[r] = max(hi / v - 1, 1 - lo / v) if v > 0 else math.inf
    return out


def undetermined(fit: FitResult) -> list[str]:
    """Components the data leave open (no switch seen, no tone near the corner)."""
    return [r for r, (lo, hi) in fit.ci95.items()
            if fit.ci_method.get(r) == "none" or not (lo > 0 and math.isfinite(hi))]


@dataclass
class Advice:
    """What to buy and what it will do, with why."""

    design: Design
    capacitance: dict[str, float]          # the capacitors the parts are chosen for
    capacitance_source: str
    capacitance_inferred: bool             # from fitted RC products over installed R
    threshold: Threshold
    threshold_source: str
    chosen_for: str                        # "corners" | "led"
    led_map: dict[str, list[tuple[float, float]]]
    bands: dict[str, dict]                 # target check per channel
    passed: bool
    target: Target
    installed: dict[str, float] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    trusted: bool = True                   # the fit's verdict on its own model

    @property
    def withheld(self) -> bool:
        """A fit the data contradict (NOT TRUSTED) recommends no part."""
        return not self.trusted

    def to_json(self) -> dict[str, Any]:
        """The recommendation blocks of report.json (and of ``fit --json``)."""
        rec = self.design.to_json()
        rec["chosen_for"] = self.chosen_for
        if self.withheld:
            rec["parts"] = {}
            rec["withheld"] = "NOT TRUSTED: the data contradict the fit's model"
        return {
            "installed_ohm": dict(self.installed),
            "capacitance": {"value_f": self.capacitance, "source": self.capacitance_source,
                            "inferred": self.capacitance_inferred},
            "led_threshold": {"value": self.threshold, "source": self.threshold_source},
            "recommended": rec,
            "target": self.target.to_json(),
            "predicted_led_bands_hz": {k: [list(b) for b in v] for k, v in self.led_map.items()},
            "target_check": self.bands,
            "pass": self.passed,
        }


def chosen_for(target: Target, by_led: bool | None) -> str:
    """Corners, or LED switch points (the default whenever the target has LED bands)."""
    if by_led is None:
        by_led = bool(target.bands)
    return "led" if by_led and target.bands else "corners"


def actual_capacitance(circ: Circuit, nominal: float | Mapping[str, float],
                       installed: Mapping[str, float], fit: FitResult | None
                       ) -> tuple[dict[str, float], str, bool]:
    """The capacitors of *this* circuit: fitted RC products over the installed resistors
    when all are known (a section the data leave open keeps its nominal capacitor)."""
    nom = capacitances(circ, nominal)
    if fit is None or not installed or not all(r in installed for r in circ.resistors):
        why = ("nominal (pass --installed to account for the capacitors' real values)"
               if fit is not None else "nominal")
        return dict(nom), why, False
    open_ = set(undetermined(fit))
    caps = {r: nom[r] if r in open_ else fit.values[r] * nom[r] / installed[r]
            for r in circ.resistors}
    source = "measured: fitted RC products over the installed resistors"
    if open_:
        source += f" (nominal for {', '.join(sorted(open_))}: not determined)"
    return caps, source, True


def advise(circ: Circuit, target: Target, *, series: str = "E24",
           capacitance: float | Mapping[str, float] = 1e-6,
           threshold: Threshold = LED_THRESHOLD, threshold_source: str = "1/sqrt(2)",
           installed: Mapping[str, float] | None = None, fit: FitResult | None = None,
           by_led: bool | None = None) -> Advice:
    """Parts for the target (for *this* circuit when a fit and the installed parts are
    given), the LED bands they light, and the verdict against the target."""
    installed = dict(installed or {})
    caps, cap_src, inferred = actual_capacitance(circ, capacitance, installed, fit)
    why = chosen_for(target, by_led)
    d = (design_for_led(circ, target, caps, threshold, series) if why == "led"
         else design(circ, target, caps, series))
    problems = []
    nominal = capacitances(circ, capacitance)
    for name, c in caps.items():
        if inferred and not 1 / CAP_PLAUSIBLE <= c / nominal[name] <= CAP_PLAUSIBLE:
            problems.append(
                f"{name}: installed {installed.get(name, 0):g} ohm with the measured corner "
                f"means a {c * 1e6:.3g} uF capacitor, {c / nominal[name]:.2g}x the nominal "
                f"{nominal[name] * 1e6:.3g} uF: check --installed and --capacitance (the parts "
                "to buy are right only if the installed value is)")
    lmap = led_map(circ, d.values, caps, threshold)
    bands = check_bands(circ, d.values, caps, threshold, target)
    trusted = True
    if fit is not None:
        trusted = fit.trusted
        for ch, (lo, hi) in (fit.led_thresholds_ci95 or {}).items():
            if ch in bands and not (lo > 0 and math.isfinite(hi)):  # a bound is no threshold
                bands[ch] = {"pass": False, "why": "its LED never switched, so its threshold "
                                                   "is unknown"}
        secs = circ.sections or {}
        for name in undetermined(fit):
            d.parts[name].measured = False  # the nominal design for the target, not measured
            for ch in ([secs[name][0]] if name in secs else circ.channels):
                if ch in bands:
                    bands[ch] = {"pass": False, "why": f"{name} is not determined by the data"}
    passed = trusted and (all(v["pass"] for v in bands.values()) if bands else True)
    return Advice(d, caps, cap_src, inferred, threshold, threshold_source, why, lmap, bands,
                  passed, target, installed, problems, trusted)


def threshold_from_fit(thr_val: Threshold | str, thr_src: str, fit: FitResult,
                       level_dbfs: float) -> tuple[Threshold, str]:
    """The LED threshold on |H| at the run's level, once the fit has estimated it."""
    scale = 10 ** (level_dbfs / 20)
    if thr_val in ("estimate", "estimate-each") and fit.led_thresholds:
        thr = {k: v / scale for k, v in fit.led_thresholds.items()}
        if thr_val == "estimate":
            thr_src = f"{thr_src}; they differ, so each LED its own, from the fitted gains"
        return thr, thr_src
    if thr_val == "estimate-each":
        return LED_THRESHOLD, ("assumed 1/sqrt(2): no usable LED observations to measure the "
                               "LEDs from")
    if thr_val == "estimate":
        thr = (fit.led_threshold or LED_THRESHOLD) / scale
        return thr, f"{thr_src} (t = {thr:.4f} at {level_dbfs:g} dBFS)"
    return thr_val, thr_src  # type: ignore[return-value]


# --- a target travels in the session header -------------------------------------------

def target_to_meta(target: Target) -> str:
    """One line of JSON: the whole target, so a session re-fits without its TOML file."""
    return json.dumps(target.to_json(), separators=(",", ":"))


def target_from_meta(meta: Mapping[str, str], where: str = "session") -> Target | None:
    """The target a session was run with (None: the header does not carry one)."""
    from hostctl.target import default_target, load_target

    spec = meta.get("target_spec")
    if spec:
        try:
            d = json.loads(spec)
            corners = {k: (v[0] if len(v) == 1 else v) for k, v in d["corners_hz"].items()}
            doc: dict[str, Any] = {"corners": corners}
            if d.get("bands_hz"):
                doc["bands"] = d["bands_hz"]
            return parse_target(doc, str(d.get("source", "session")))
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise InputError(f"session header 'target_spec' is not a target ({e})",
                             where) from None
    src = meta.get("target")
    if not src:
        return None
    if src == default_target().source:
        return default_target()
    return load_target(src)
