"""A session fitted and judged the way its run did: calibrate at its end, ``hostctl fit
SESSION`` and ``hostctl report`` afterwards give the same answer from the same rows.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from hostctl.advice import Advice, advise, threshold_from_fit
from hostctl.circuits import LED_THRESHOLD, Circuit, Threshold, format_threshold, get_circuit
from hostctl.dataset import Measurement, MeasurementSet
from hostctl.errors import FitError
from hostctl.runconfig import SECOND_LEVEL_DB, RunConfig, SessionHeader

if TYPE_CHECKING:
    from hostctl.fit import FitResult
    from hostctl.leds import LedDrive

#: What a run cannot know of the build its verdict is about: each capacitor is known
#: through the installed resistor's tolerance (5 %, E24 parts), or its own (10 %) when the
#: installed resistors are not given; a PASS must hold across it.
SPLIT_TOL = {True: 0.05, False: 0.10}


def led_threshold_for(cfg: RunConfig, data: MeasurementSet, level: float
                      ) -> tuple[Threshold | str, str]:
    """The LED threshold on |H| at ``level`` (one, or per channel) and where it comes from
    ("estimate": measured)."""
    if cfg.led_threshold is not None:
        return cfg.led_threshold, "given (--led-threshold)"
    if cfg.led_vf is not None:
        vins = [m.vin_v for m in data.rows if m.vin_v and m.led_usable]
        if not vins:
            raise FitError("no reference amplitude measured to turn --led-vf into a threshold")
        a = statistics.median(vins)
        vf = cfg.led_vf
        thr = {k: v / a for k, v in vf.items()} if isinstance(vf, dict) else vf / a
        return thr, (f"from the LED switching voltage {format_threshold(vf, 'g')} V and the "
                     f"measured reference amplitude {a:.3f} V peak")
    if cfg.mode == "gain":
        return LED_THRESHOLD, "assumed 1/sqrt(2) (gain mode; pass --led-vf for your LEDs)"
    if cfg.mode == "both":
        return "estimate-each", (f"measured for each LED: the fitted gains and its switches "
                                 f"at {level:g} dBFS")
    return "estimate", (f"estimated, one shared by all LEDs (LEDs that differ: --led-vf "
                        f"per LED or --mode both), from LED switches at {level:g} and "
                        f"{level + SECOND_LEVEL_DB:g} dBFS")


def fit_session(cfg: RunConfig, data: MeasurementSet, level: float) -> FitResult:
    """Fit what the run's mode observes; LED rows with their reference amplitudes are
    judged on volts (an estimated threshold is then a switching voltage; without them,
    relative to 0 dBFS, where tone levels matter)."""
    from hostctl.fit import fit

    thr, _ = led_threshold_for(cfg, data, level)
    keep_level = thr in ("estimate", "estimate-each")
    rows: list[Measurement] = []
    for m in data.rows:
        g = m.gain if (cfg.mode != "led" and m.gain_usable) else None
        led = m.led if (cfg.mode != "gain" and m.led_usable) else None
        if g is not None or led is not None:
            # the row as measured (its noise figures too), minus what this mode ignores
            rows.append(replace(m, gain=g, led=led, flag="",
                                level_dbfs=m.level_dbfs if keep_level else None))
    led_rows = [m for m in rows if m.led is not None]
    on_volts = isinstance(thr, str) or cfg.led_vf is not None
    if cfg.led_threshold is None and on_volts and led_rows and all(m.vin_v for m in led_rows):
        # each LED row against its own tone's reference amplitude, not a typical one:
        # the filters' input sags with frequency (an estimated threshold is then volts)
        from hostctl.fit import SwitchVoltage

        thr = SwitchVoltage(thr if isinstance(thr, str) else cfg.led_vf)
    # the preset's name, not its Circuit: a family's topologies are weighed by the data
    return fit(MeasurementSet(rows, dict(data.meta)), cfg.circuit,
               capacitance=cfg.capacitance,
               led_threshold=thr)


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
    thr, src = threshold_from_fit(*led_threshold_for(cfg, data, level), result, level)
    if cfg.led_vf is None and cfg.led_threshold is None:
        thr, src = volts_threshold(result, data, thr, src)
    drive, unknown, _ = led_judging(cfg, data, result, level)
    circ = get_circuit(result.circuit)
    adv = advise(circ, cfg.target, series=cfg.series,
                 capacitance=cfg.capacitance, threshold=thr, threshold_source=src,
                 installed=cfg.installed, fit=result, drive=drive,
                 unknown_thresholds=unknown)
    check_robust(adv, circ, measured_ranges(cfg, result))
    return result, cfg, adv


def led_judging(cfg: RunConfig, data: MeasurementSet, result: FitResult, level: float
                ) -> tuple[LedDrive | None, set[str], list[str]]:
    """How the verdict judges the LEDs: on volts with the measured source (``--led-vf``),
    or on |H|; and the LEDs whose threshold is a placeholder (a mode that measures it,
    with no LED observation to measure it from)."""
    from hostctl.source import measured_drive

    circ = get_circuit(result.circuit)
    volts: Threshold | None = cfg.led_vf if cfg.led_threshold is None else None
    if volts is None and cfg.led_threshold is None and result.led_vf:
        volts = result.led_vf          # measured by the fit, on volts
    if volts is not None:
        try:
            return measured_drive(circ, result, cfg.capacitance, data.rows, volts,
                                  level, cfg.installed), set(), []
        except FitError as e:
            return None, set(), [f"LEDs judged on |H|: {e}"]
    if cfg.led_threshold is None and cfg.mode != "gain" and not result.led_thresholds \
            and result.led_threshold is None:
        return None, set(circ.channels), []
    return None, set(), []


def measured_ranges(cfg: RunConfig, result: FitResult
                    ) -> dict[str, tuple[float, float]] | None:
    """Each LED's switching voltage range where the run measured it on volts, else None."""
    if cfg.led_threshold is not None or cfg.led_vf is not None or not result.led_vf:
        return None
    if result.led_thresholds_ci95:
        return dict(result.led_thresholds_ci95)
    ci = result.led_threshold_ci95
    return {ch: ci for ch in result.led_vf} if ci else None


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


#: FAIL reasons about what the data left unknown (no build to second-guess there)
UNKNOWN_WHY = ("not determined", "unknown", "never switched", "cannot tell", "NOT TRUSTED")


def check_robust(adv: Advice, circ: Circuit,
                 vf_ranges: Mapping[str, tuple[float, float]] | None = None) -> None:
    """A verdict must hold for every build the run cannot tell from the one it assumed:
    each capacitor anywhere in what the run knows of it (:data:`SPLIT_TOL`), the source
    resistance at its interval's ends, each LED's switching voltage at its measured range's
    ends (an LED's band edge moves with RC and with the source's sag). A PASS that fails
    on one of them, or a FAIL about the build that passes on one, becomes 'cannot be
    sure' (not a PASS)."""
    drive = adv.drive
    if drive is None or adv.withheld:
        return
    chans = [ch for ch, b in adv.bands.items() if ch in adv.target.bands and (
        b.get("pass") or not any(w in b.get("why", "") for w in UNKNOWN_WHY))]
    flips = _flips(adv, circ, drive, chans, vf_ranges or {})
    tol = SPLIT_TOL[adv.capacitance_inferred]
    what = (f"with each capacitor within +-{tol:.0%} (known only through the "
            f"{'installed resistors' if adv.capacitance_inferred else 'parts'}' tolerance)")
    fix = ("measure the capacitors (or the installed resistors) and give them, or a target "
           "whose band gaps leave room for the parts' tolerance")
    for ch, how in flips.items():
        old = adv.bands[ch]
        if old.get("pass"):
            why = f"its LED meets the bands with the capacitors assumed, but {what} it is {how}"
        else:
            why = (f"as assumed its LED fails ({old.get('why', '')}), but {what} it meets "
                   f"the bands {how}")
        adv.bands[ch] = {"pass": False, "why": f"cannot be sure: {why}",
                         "fix": old.get("fix") or fix}
        adv.passed = False


def _flips(adv: Advice, circ: Circuit, drive: LedDrive, chans: list[str],
           vf_ranges: Mapping[str, tuple[float, float]]) -> dict[str, str]:
    """Channels whose verdict some build the run cannot rule out reverses -> where/how."""
    from itertools import product

    from hostctl.leds import GRID, led_volts

    tol = SPLIT_TOL[adv.capacitance_inferred]
    ci = (drive.estimate or {}).get("ci95_ohm") or [drive.r_source, drive.r_source]
    sources = sorted({drive.r_source, ci[0], drive.r_source if ci[1] is None else ci[1]})
    out: dict[str, str] = {}
    for signs in product((-1.0, 1.0), repeat=len(adv.capacitance)):
        caps = {r: c * (1 + s * tol) for (r, c), s in zip(adv.capacitance.items(), signs,
                                                            strict=True)}
        for rs in sources:
            volts = led_volts(circ, GRID, adv.design.values, caps, replace(drive, r_source=rs))
            for ch in chans:
                if ch in out:
                    continue
                lo, hi = vf_ranges.get(ch, (drive.vth(ch), drive.vth(ch)))
                if adv.bands[ch].get("pass"):   # must hold at the least favourable V_f
                    miss = _band_miss(volts[ch], adv.target.bands[ch], hi, lo)
                    if miss:
                        out[ch] = f"{miss} with the source at {rs:.3g} ohm"
                elif not _band_miss(volts[ch], adv.target.bands[ch], lo, hi):
                    out[ch] = f"with the source at {rs:.3g} ohm"
    return out


def _band_miss(v: Any, bands: Mapping[str, Any], vf_on: float, vf_off: float) -> str:
    """Where ``v`` (volts on leds.GRID) misses the bands: lit above ``vf_on`` all over the
    on-bands, at most ``vf_off`` all over the off-bands ('' = meets them)."""
    from hostctl.leds import GRID

    for kind, spans in bands.items():
        for flo, fhi in spans:
            m = (GRID >= flo) & (GRID <= fhi)
            bad = m & ((v <= vf_on) if kind == "on" else (v > vf_off))
            if bad.any():
                f = float(GRID[bad][0])
                return f"{'dark' if kind == 'on' else 'lit'} at {f:.0f} Hz in its {kind} band"
    return ""
