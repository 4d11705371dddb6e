"""How an LED's switching is known: one tagged union, decoded here and nowhere else.

An LED lights when its filter output passes a threshold. That threshold is given on |H|
(:class:`Fixed`), follows from the LEDs' switching voltages and the measured reference
(:class:`FromVf`), or is measured from the switches themselves, one for all LEDs
(:class:`EstimateShared`) or one per LED from the fitted gains (:class:`EstimatePerLed`).
The CLI parses text into a rule, a run's settings resolve to one (:func:`for_run`), the fit
takes one at its public boundary (:func:`as_rule` accepts the older float / mapping /
``"estimate"`` / ``"estimate-each"`` forms) and the verdicts match on it. The session header
keeps its two text lines (``led_threshold``, ``led_vf``) as they were.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hostctl.circuits import LED_THRESHOLD, Threshold
from hostctl.errors import InputError
from hostctl.files import ascii_float
from hostctl.values import parse_per_led

if TYPE_CHECKING:
    from hostctl.fit import FitResult


@dataclass(frozen=True)
class Fixed:
    """A threshold on |H| at the run's level, one for all LEDs or per channel; ``given``
    False: the 1/sqrt(2) a run that does not look at the LEDs assumes."""

    value: Threshold
    given: bool = True


@dataclass(frozen=True)
class FromVf:
    """Switching voltages (one, or per LED): each LED row judged on |H| x its own tone's
    reference amplitude."""

    volts: Threshold


@dataclass(frozen=True)
class EstimateShared:
    """One threshold for all LEDs, measured from their switches (at two tone levels, or on
    volts against each row's reference when ``on_volts``)."""

    on_volts: bool = False


@dataclass(frozen=True)
class EstimatePerLed:
    """Each LED's own threshold, from the fitted gains and its switches (on volts against
    each row's reference when ``on_volts``)."""

    on_volts: bool = False


LedRule = Fixed | FromVf | EstimateShared | EstimatePerLed
#: the text a user (and the fit's older callers) write for the two measured rules
ESTIMATE_NAMES = {"estimate": EstimateShared, "estimate-each": EstimatePerLed}


def is_estimate(rule: LedRule) -> bool:
    return isinstance(rule, EstimateShared | EstimatePerLed)


def for_run(led_threshold: Threshold | None, led_vf: Threshold | None, mode: str) -> LedRule:
    """A calibration's rule: the threshold given, else the LEDs' voltages given, else what
    its mode measures (gain mode does not look at the LEDs: 1/sqrt(2) assumed)."""
    if led_threshold is not None:
        return Fixed(led_threshold)
    if led_vf is not None:
        return FromVf(led_vf)
    if mode == "gain":
        return Fixed(LED_THRESHOLD, given=False)
    return EstimatePerLed() if mode == "both" else EstimateShared()


def parse(text: str, option: str = "{led_threshold}") -> LedRule:
    """``0.5``, ``low=0.5,band=0.6,high=0.8``, ``estimate`` or ``estimate-each``."""
    word = text.strip().lower()
    if word in ESTIMATE_NAMES:
        return ESTIMATE_NAMES[word]()
    if "=" in text:  # one per LED (channels checked against the circuit by the fit)
        return Fixed(parse_per_led(text, option))
    try:
        t = ascii_float(text)
    except ValueError:
        raise InputError(f"{option}: '{text}' is not a number, 'estimate' or "
                         "'estimate-each'").naming() from None
    if not (t > 0 and t < float("inf")):
        raise InputError(f"{option}: must be a positive number, got {text}").naming()
    return Fixed(t)


def as_rule(value: Any) -> LedRule:
    """A rule from any form the fit has accepted: a rule, a number or per-channel mapping,
    ``"estimate"`` / ``"estimate-each"``, or a :class:`hostctl.fit.SwitchVoltage`."""
    if isinstance(value, Fixed | FromVf | EstimateShared | EstimatePerLed):
        return value
    if isinstance(value, str):
        if value not in ESTIMATE_NAMES:
            raise InputError(f"LED threshold '{value}' is not a number, 'estimate' or "
                             "'estimate-each'")
        return ESTIMATE_NAMES[value]()
    volts = getattr(value, "volts", None)
    if volts is not None:                # a SwitchVoltage
        if isinstance(volts, str):
            return judged_on_volts(as_rule(volts))
        return FromVf(volts)
    if isinstance(value, Mapping):
        return Fixed(dict(value))
    return Fixed(float(value))


def judged_on_volts(rule: LedRule) -> LedRule:
    """The measured rules judged on volts (each row against its own tone's reference)."""
    if isinstance(rule, EstimateShared | EstimatePerLed):
        return type(rule)(on_volts=True)
    return rule


def engine_form(rule: LedRule) -> Any:
    """The form the fit's internals take (converted once, at :func:`hostctl.fit.fit`)."""
    from hostctl.fit.problem import SwitchVoltage

    if isinstance(rule, Fixed):
        return rule.value
    if isinstance(rule, FromVf):
        return SwitchVoltage(rule.volts)
    name = "estimate" if isinstance(rule, EstimateShared) else "estimate-each"
    return SwitchVoltage(name) if rule.on_volts else name


def on_h(rule: LedRule, source: str, fit: FitResult, level_dbfs: float
         ) -> tuple[Threshold, str]:
    """The threshold on |H| at the run's level once the fit has measured what the rule left
    open, and where it comes from (``source``: the rule's own words)."""
    scale = 10 ** (level_dbfs / 20)
    if isinstance(rule, Fixed):
        return rule.value, source
    if isinstance(rule, FromVf):
        raise ValueError("FromVf: resolve the volts on a reference amplitude first")
    if fit.led_thresholds:
        thr = {k: v / scale for k, v in fit.led_thresholds.items()}
        if isinstance(rule, EstimateShared):
            source = f"{source}; they differ, so each LED its own, from the fitted gains"
        return thr, source
    if isinstance(rule, EstimatePerLed):
        return LED_THRESHOLD, ("assumed 1/sqrt(2): no usable LED observations to measure the "
                               "LEDs from")
    t = (fit.led_threshold or LED_THRESHOLD) / scale
    return t, f"{source} (t = {t:.4f} at {level_dbfs:g} dBFS)"
