"""A session fitted and judged the way its run did: calibrate at its end, ``hostctl fit
SESSION`` and ``hostctl report`` afterwards give the same answer from the same rows.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from hostctl.advice import Advice, advise
from hostctl.circuits import Circuit, Threshold, format_threshold, get_circuit
from hostctl.dataset import Measurement, MeasurementSet
from hostctl.errors import FitError
from hostctl.ledrule import (
    EstimatePerLed,
    Fixed,
    FromVf,
    LedRule,
    is_estimate,
    judged_on_volts,
    on_h,
)
from hostctl.robust import DEFAULT_CAP_TOL
from hostctl.runconfig import SECOND_LEVEL_DB, RunConfig, SessionHeader

if TYPE_CHECKING:
    from hostctl.fit import FitResult
    from hostctl.leds import LedDrive

#: What a run cannot know of each capacitor unless told (hostctl.robust)
SPLIT_TOL = DEFAULT_CAP_TOL


def led_threshold_for(cfg: RunConfig, data: MeasurementSet, level: float
                      ) -> tuple[LedRule, str]:
    """The run's LED rule with the LEDs' voltages turned into |H| at the measured reference
    amplitude (a :class:`~hostctl.ledrule.Fixed`), and where it comes from."""
    rule = cfg.led_rule
    if isinstance(rule, Fixed):
        return rule, ("given (the LED threshold setting)" if rule.given else
                      "assumed 1/sqrt(2) (gain mode; give your LEDs' switching voltage)")
    if isinstance(rule, FromVf):
        vins = [m.vin_v for m in data.rows if m.vin_v and m.led_usable]
        if not vins:
            raise FitError("no reference amplitude measured to turn {led_vf} into a threshold"
                           ).naming(led_vf="the LED switching voltage")
        a = statistics.median(vins)
        vf = rule.volts
        thr = {k: v / a for k, v in vf.items()} if isinstance(vf, Mapping) else vf / a
        return Fixed(thr), (f"from the LED switching voltage {format_threshold(vf, 'g')} V "
                            f"and the measured reference amplitude {a:.3f} V peak")
    if isinstance(rule, EstimatePerLed):
        return rule, f"measured for each LED: the fitted gains and its switches at {level:g} dBFS"
    return rule, (f"estimated, one shared by all LEDs (LEDs that differ: a switching "
                  f"voltage per LED, or mode both), from LED switches at {level:g} and "
                  f"{level + SECOND_LEVEL_DB:g} dBFS")


def fit_session(cfg: RunConfig, data: MeasurementSet, level: float) -> FitResult:
    """Fit what the run's mode observes; LED rows with their reference amplitudes are
    judged on volts (an estimated threshold is then a switching voltage; without them,
    relative to 0 dBFS, where tone levels matter)."""
    from hostctl.fit import fit

    rule, _ = led_threshold_for(cfg, data, level)
    keep_level = is_estimate(rule)
    rows: list[Measurement] = []
    for m in data.rows:
        g = m.gain if (cfg.mode != "led" and m.gain_usable) else None
        led = m.led if (cfg.mode != "gain" and m.led_usable) else None
        if g is not None or led is not None:
            # the row as measured (its noise figures too), minus what this mode ignores
            rows.append(replace(m, gain=g, led=led, flag="",
                                level_dbfs=m.level_dbfs if keep_level else None))
    led_rows = [m for m in rows if m.led is not None]
    if led_rows and all(m.vin_v for m in led_rows):
        # each LED row against its own tone's reference amplitude, not a typical one:
        # the filters' input sags with frequency (an estimated threshold is then volts)
        rule = judged_on_volts(cfg.led_rule)
    # the preset's name, not its Circuit: a family's topologies are weighed by the data
    return fit(MeasurementSet(rows, dict(data.meta)), cfg.circuit,
               capacitance=cfg.capacitance, led_threshold=rule)


def refit(data: MeasurementSet) -> FitResult:
    """Re-fit a recorded session offline exactly as its run did."""
    header = SessionHeader.from_meta(data.meta)
    return fit_session(header.config, data, header.level)


def advise_session(data: MeasurementSet, cfg: RunConfig | None = None
                   ) -> tuple[FitResult, RunConfig, Advice]:
    """Re-fit a session and recommend exactly as its run did: its installed parts,
    capacitance, target, series and threshold (``cfg``: the header's settings, possibly
    overridden by the command line)."""
    header = SessionHeader.from_meta(data.meta)
    cfg = cfg or header.config
    level = cfg.level_dbfs if header.level_dbfs_used is None else header.level_dbfs_used
    result = fit_session(cfg, data, level)
    return result, cfg, recommend(cfg, result, assess(cfg, data, result, level))


@dataclass(frozen=True)
class Assessment:
    """How the LEDs are judged once the fit is in (calibrate's assess phase)."""

    #: on |H| at the run's level, for the LED maps and the plot, and where it comes from
    threshold: Threshold
    source: str
    #: the LEDs judged on volts with the measured source; None: judged on |H|
    drive: LedDrive | None
    #: LEDs whose threshold is a placeholder (nothing measured it)
    unknown: frozenset[str]
    #: for the run's problems (e.g. why the LEDs fell back to |H|)
    notes: tuple[str, ...]


def assess(cfg: RunConfig, data: MeasurementSet, result: FitResult, level: float
           ) -> Assessment:
    """The LED threshold the fit leaves, and how the verdict judges each LED."""
    thr, src = on_h(*led_threshold_for(cfg, data, level), result, level)
    if not (_given(cfg.led_rule) or isinstance(cfg.led_rule, FromVf)):
        thr, src = volts_threshold(result, data, thr, src)
    drive, unknown, notes = led_judging(cfg, data, result, level)
    return Assessment(thr, src, drive, frozenset(unknown), tuple(notes))


def recommend(cfg: RunConfig, result: FitResult, judged: Assessment) -> Advice:
    """The parts to buy and the verdict (calibrate's recommend phase, and every re-fit's):
    for the topology the data chose (a passive band-pass is not designed as a buffered one),
    held to what the run cannot know (:func:`check_robust`)."""
    circ = get_circuit(result.circuit)
    adv = advise(circ, cfg.target, series=cfg.series, capacitance=cfg.capacitance,
                 threshold=judged.threshold, threshold_source=judged.source,
                 installed=cfg.installed, fit=result, drive=judged.drive,
                 unknown_thresholds=set(judged.unknown))
    check_robust(adv, circ, measured_ranges(cfg, result), cfg.cap_tolerance)
    return adv


def led_judging(cfg: RunConfig, data: MeasurementSet, result: FitResult, level: float
                ) -> tuple[LedDrive | None, set[str], list[str]]:
    """How the verdict judges the LEDs: on volts with the measured source (``--led-vf``),
    or on |H|; and the LEDs whose threshold is a placeholder (a mode that measures it,
    with no LED observation to measure it from)."""
    from hostctl.source import measured_drive

    circ = get_circuit(result.circuit)
    rule = cfg.led_rule
    volts: Threshold | None = rule.volts if isinstance(rule, FromVf) else None
    if volts is None and not _given(rule) and result.led_vf:
        volts = result.led_vf          # measured by the fit, on volts
    if volts is not None:
        try:
            return measured_drive(circ, result, cfg.capacitance, data.rows, volts,
                                  level, cfg.installed), set(), []
        except FitError as e:
            return None, set(), [f"LEDs judged on |H|: {e}"]
    if is_estimate(rule) and not result.led_thresholds and result.led_threshold is None:
        return None, set(circ.channels), []
    return None, set(), []


def measured_ranges(cfg: RunConfig, result: FitResult
                    ) -> dict[str, tuple[float, float]] | None:
    """Each LED's switching voltage range where the run measured it on volts, else None."""
    if _given(cfg.led_rule) or isinstance(cfg.led_rule, FromVf) or not result.led_vf:
        return None
    if result.led_thresholds_ci95:
        return dict(result.led_thresholds_ci95)
    ci = result.led_threshold_ci95
    return {ch: ci for ch in result.led_vf} if ci else None


def _given(rule: LedRule) -> bool:
    return isinstance(rule, Fixed) and rule.given


def volts_threshold(result: FitResult, data: MeasurementSet, thr: Threshold, src: str
                    ) -> tuple[Threshold, str]:
    """Switching voltages the fit measured: the |H| thresholds at the median reference
    amplitude (for the maps and the plot; the verdicts use the volts), and where they
    come from."""
    vf = result.led_vf
    if not vf:
        return thr, src
    vins = sorted(m.vin_v for m in data.rows if m.vin_v and m.led is not None) or [1.0]
    a = vins[len(vins) // 2]
    note = next((n for n in result.notes if "switching volt" in n), "")
    return ({k: v / a for k, v in vf.items()},
            f"LED switching voltages measured on volts at the filter outputs: {note}")


def check_robust(adv: Advice, circ: Circuit,
                 vf_ranges: Mapping[str, tuple[float, float]] | None = None,
                 cap_tol: float | None = None) -> None:
    """A verdict must hold for every build the run cannot tell from the one it assumed:
    parts that do (E-series neighbours if need be), else UNSURE (:mod:`hostctl.robust`)."""
    from hostctl.robust import make_robust

    make_robust(adv, circ, vf_ranges, cap_tol)
