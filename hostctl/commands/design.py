"""`hostctl design`: standard resistors for a target before anything is built."""

from __future__ import annotations

import json

import click

from hostctl.advice import CHOSEN_FOR, advise
from hostctl.circuits import (
    CIRCUITS,
    LED_THRESHOLD,
    capacitances,
    format_threshold,
    get_circuit,
)
from hostctl.commands.options import (
    AsciiNumber,
    bias_option,
    capacitance_option,
    check_capacitance,
    check_per_led,
    parse_capacitance,
    parse_per_led,
    series_option,
    use_bias,
)
from hostctl.errors import InputError
from hostctl.leds import ASSUMED_FULL_SCALE_V, ASSUMED_SOURCE_OHM, LedDrive, has_source
from hostctl.recommend import format_ohm
from hostctl.report import led_lines, width, wrap
from hostctl.target import load_target


@click.command("design")
@click.option("--target", "target_file", type=str, default=None,
              help="Target TOML (corners / LED bands). Default: the notebook's color organ.")
@click.option("--circuit", "circuit_name", default=None,
              help=f"Circuit preset ({', '.join(CIRCUITS)}). Default: color-organ.")
@click.option("--netlist", default=None,
              help="Your circuit as a SPICE netlist (.cir) instead of --circuit.")
@bias_option
@capacitance_option
@series_option
@click.option("--led-threshold", default=None,
              help="|H| at which the LEDs light at your tone level, one or per LED "
                   "(low=0.5,band=0.6,high=0.8; e.g. from `hostctl calibrate`): parts are "
                   "then chosen so each LED switches mid-gap of the target's LED bands. "
                   "Default: design the corners (LEDs at 1/sqrt(2)).")
@click.option("--led-vf", default=None,
              help="LED switching voltage (V, peak at its filter output), one or per LED "
                   "(low=0.25,band=0.3,high=0.4): the LEDs are then judged on the volts the "
                   "circuit gives them from the source below, and parts chosen so each "
                   "switches mid-gap of the target's LED bands.")
@click.option("--source-ohm", type=AsciiNumber(lo=0, hi=10000), default=None,
              help=f"The sound card's output resistance (ohm; with --led-vf). Default: "
                   f"assumed {ASSUMED_SOURCE_OHM:g} (measure yours with `hostctl calibrate`).")
@click.option("--level", "level_dbfs", type=AsciiNumber(lo=-60, hi=0), default=-6.0,
              show_default=True, help="Tone level in dBFS (with --led-vf).")
@click.option("--full-scale-v", type=AsciiNumber(lo=0.01, hi=20), default=None,
              help=f"The sound card's open-circuit peak volts at 0 dBFS (with --led-vf). "
                   f"Default: assumed {ASSUMED_FULL_SCALE_V:g}.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def command(target_file: str | None, circuit_name: str | None, netlist: str | None,
            capacitance: str, series: str, led_threshold: str | None, as_json: bool,
            led_vf: str | None = None, source_ohm: float | None = None,
            level_dbfs: float = -6.0, full_scale_v: float | None = None,
            bias_ohm: str | None = None) -> None:
    """Standard resistors that meet a target with the given capacitors."""
    from hostctl.commands.fit import _netlist

    circ = _netlist(netlist, circuit_name) or get_circuit(circuit_name or "color-organ")
    use_bias(bias_ohm, circ.name)
    circ = get_circuit(circ.name)
    caps = parse_capacitance(capacitance)
    if netlist is not None and capacitance == "1e-6":   # not given: the netlist's own
        caps = capacitances(circ, {})
    check_capacitance(caps, circ)
    tgt = load_target(target_file)
    tgt.check(circ)
    thr = LED_THRESHOLD
    if led_threshold is not None:
        thr = parse_per_led(led_threshold, "--led-threshold")
        check_per_led(thr, "--led-threshold", 0, 1, "", circ)
    drive = _drive(led_vf, led_threshold, source_ohm, level_dbfs, full_scale_v, circ)
    by_led = (led_threshold is not None or drive is not None) and bool(tgt.bands)
    adv = advise(circ, tgt, series=series, capacitance=caps, threshold=thr,
                 threshold_source="given (--led-threshold)" if led_threshold is not None
                 else "1/sqrt(2): the corners", by_led=by_led, drive=drive)
    d, lmap, checks = adv.design, adv.led_map, adv.bands
    if as_json:
        out = d.to_json()
        out["chosen_for"] = adv.chosen_for
        out["target"] = tgt.to_json()
        out["led_threshold"] = thr
        out["led_drive"] = None if drive is None else drive.to_json()
        out["predicted_led_bands_hz"] = {k: [list(b) for b in v] for k, v in lmap.items()}
        out["target_check"] = checks
        out["pass"] = adv.passed
        click.echo(json.dumps(out, indent=2))
        if not adv.passed:
            raise SystemExit(1)
        return
    cols = width()
    for text in (f"target: {tgt.source}; circuit {circ.name}; series {d.series}",
                 f"why these parts: {CHOSEN_FOR[adv.chosen_for]}"):
        click.echo("\n".join(wrap(text, cols)))
    click.echo(f"{'component':<12} {'ideal':>10} {'part':>8} {'corner':>11} {'error':>7}")
    for r, p in d.parts.items():
        click.echo(f"{r:<12} {p.ideal_ohm:>10.2f} {format_ohm(p.value_ohm):>8} "
                   f"{p.corner_hz:>8.1f} Hz {100 * p.corner_error:>+6.2f}%")
        if p.pair is not None:
            click.echo("\n".join(wrap(f"{'':<12} or {p.pair.text} = "
                                      f"{format_ohm(p.pair.value_ohm)} -> "
                                      f"{p.pair_corner_hz:.1f} Hz", cols)))
    if drive is not None:
        click.echo("\n".join(wrap(drive.describe(), cols)))
    else:
        click.echo(f"LED threshold {format_threshold(thr)} of the tone")
    for line in led_lines(lmap, checks, "lit "):
        click.echo("\n".join(wrap(line, cols)))
    click.echo(f"target ({tgt.source}): {'PASS' if adv.passed else 'FAIL'}")
    if not adv.passed:
        raise SystemExit(1)


def _drive(led_vf: str | None, led_threshold: str | None, source_ohm: float | None,
           level_dbfs: float, full_scale_v: float | None, circ) -> LedDrive | None:
    """The LEDs on volts (--led-vf) from the given or assumed source; says which."""
    if led_vf is None:
        if source_ohm is not None or full_scale_v is not None:
            raise InputError("--source-ohm and --full-scale-v describe what drives the LEDs: "
                             "give --led-vf too")
        return None
    if led_threshold is not None:
        raise InputError("give either --led-vf or --led-threshold, not both")
    vf = parse_per_led(led_vf, "--led-vf")
    check_per_led(vf, "--led-vf", 0, 5, " V", circ)
    assumed = [what for what, v in (("source resistance", source_ohm),
                                    ("full-scale volts", full_scale_v)) if v is None]
    r = ASSUMED_SOURCE_OHM if source_ohm is None else float(source_ohm)
    fs = ASSUMED_FULL_SCALE_V if full_scale_v is None else float(full_scale_v)
    how = ("given" if not assumed else f"assumed {' and '.join(assumed)}: measure them "
           "with `hostctl calibrate`")
    if not has_source(circ):
        how += f"; {circ.name} has no source resistance in it, so it is not modelled"
    return LedDrive(vf, fs * 10 ** (level_dbfs / 20), r, level_dbfs, how,
                    headroom_db=-level_dbfs)
