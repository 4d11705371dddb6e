"""`hostctl fit`: component values (with 95% intervals) from a measurement CSV or session file."""

from __future__ import annotations

import contextlib
import json
import math
import tomllib
from collections.abc import Iterator
from typing import Any

import click

from hostctl.circuits import (
    CIRCUITS,
    LED_THRESHOLD,
    capacitances,
    format_threshold,
    get_circuit,
)
from hostctl.commands.options import (
    bias_option,
    cap_tolerance_option,
    check_capacitance,
    parse_cap_tolerance,
    parse_capacitance,
    parse_per_led,
    parse_values,
    use_bias,
)
from hostctl.dataset import MeasurementSet
from hostctl.errors import FitError, InputError
from hostctl.files import read_regular
from hostctl.ledrule import Fixed, FromVf, LedRule, is_estimate
from hostctl.ledrule import parse as parse_rule

LOSS_CHOICES = ("auto", "notebook-mse", "notebook-weighted")


def _data_lines(path: str) -> list[int]:
    """Line numbers of the data rows (after the header), as MeasurementSet counts them."""
    try:
        text = read_regular(path, "CSV file").decode("utf-8-sig")
    except (InputError, UnicodeDecodeError):
        return []
    lines = [n for n, s in enumerate(text.splitlines(), start=1)
             if s.strip() and not s.strip().startswith("#")]
    return lines[1:]


DEFAULT_THRESHOLD_TEXT = "0.7071067811865476"


def _positive(text: str, option: str, kind: type) -> float:
    try:
        v = kind(text)
    except ValueError:
        raise InputError(f"{option}: '{text}' is not a {kind.__name__}") from None
    if not (math.isfinite(v) and v > 0):
        raise InputError(f"{option}: must be positive, got {text}")
    return v


def _prior_file(path: str) -> dict[str, tuple[float, float]]:
    """TOML: ``R_low = "220@5%"`` or ``R_low = {value = 220, sigma = 0.05}``, top level or
    under ``[prior]``."""
    from hostctl.fit import parse_prior

    raw = read_regular(path, "prior TOML file")
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"not valid TOML: {e}", path) from None
    table = doc.get("prior", doc)
    if not isinstance(table, dict):
        raise InputError("[prior] must be a table of NAME = \"OHMS@SIGMA\"", path)
    out: dict[str, tuple[float, float]] = {}
    for k, v in table.items():
        if isinstance(v, str):
            name, spec = parse_prior(f"{k}={v}")
        elif isinstance(v, dict) and "value" in v and "sigma" in v:
            try:
                spec = (float(v["value"]), float(v["sigma"]))
            except (TypeError, ValueError):
                raise InputError(f"prior '{k}': value and sigma must be numbers", path) from None
            name = k
        else:
            raise InputError(f"prior '{k}': write \"220@5%\" or {{value = 220, sigma = 0.05}}",
                             path)
        if not all(math.isfinite(x) and x > 0 for x in spec):
            raise InputError(f"prior '{k}': value and sigma must be positive", path)
        out[name] = spec
    return out


@click.command("fit")
@click.argument("data", type=str)
@click.option("--circuit", "circuit_name", default=None,
              help=f"Circuit preset ({', '.join(CIRCUITS)}). Default: the file's "
                   "'# circuit:' line.")
@click.option("--netlist", "netlist", default=None,
              help="Your circuit as a SPICE netlist (.cir, see the presets) instead of "
                   "--circuit; its capacitors are the default --capacitance.")
@bias_option
@click.option("--capacitance", default=None,
              help="Farads for every section, or C_low=1e-6,C_high=2.2e-6. Default: the "
                   "file's '# capacitance:' line, else 1e-6.")
@click.option("--led-threshold", "led_threshold", default=DEFAULT_THRESHOLD_TEXT,
              show_default="1/sqrt(2)",
              help="|H| at which an LED lights, one for all or per LED (low=0.5,band=0.6,"
                   "high=0.8), 'estimate' (one shared; needs level_dbfs rows) or "
                   "'estimate-each' (one per LED; needs gains too).")
@click.option("--series", default=None,
              help="Standard series for the recommended parts: E12, E24, E96. Default: the "
                   "session's, else E24.")
@click.option("--target", "target_file", default=None,
              help="Target TOML the parts are chosen for. Default: the session's target, "
                   "else the notebook's color organ.")
@click.option("--installed", default=None,
              help="Installed resistors (R_low=200,...): the fit then measures the "
                   "capacitors. Default: the session's '# installed:' line.")
@click.option("--loss", default="auto", show_default=True,
              help="auto | notebook-mse | notebook-weighted (the notebook's losses, for "
                   "teaching only).")
@click.option("--prior", "priors", multiple=True,
              help="Prior toward a nominal value: R_low=220@5% (repeatable).")
@click.option("--prior-file", default=None, help="TOML file of priors (R_low = \"220@5%\").")
@click.option("--fixed", default=None, help="Hold resistors: R_low=220,R_high=33.")
@click.option("--lr", default=None, help="Learning rate (notebook losses only; default 200).")
@click.option("--steps", default=None,
              help="Max steps (notebook losses only; default 100000).")
@click.option("--led-vf", default=None,
              help="LED switching voltage (V), one or per LED (low=1.8,band=2.0,high=2.9): "
                   "each LED row is judged on |H| x its tone's reference amplitude (vin_v).")
@cap_tolerance_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def command(data: str, circuit_name: str | None, capacitance: str | None, led_threshold: str,
            series: str | None, loss: str, priors: tuple[str, ...], prior_file: str | None,
            fixed: str | None, lr: str | None, steps: str | None, as_json: bool,
            target_file: str | None = None, installed: str | None = None,
            led_vf: str | None = None, netlist: str | None = None,
            bias_ohm: str | None = None, cap_tolerance: str | None = None) -> None:
    """Fit component values to a measurement CSV (or a session file), and the parts to buy.

    \b
    A calibrate session is re-fitted exactly as its run did (mode, LED threshold) and the
    parts are chosen exactly as the run chose them (its installed parts, capacitors,
    target and series), so `hostctl fit DIR/session.csv` gives calibrate's answer.
    """
    from hostctl.recommend import series_info
    from hostctl.target import load_target

    if series is not None:
        series_info(series)
        series = series.upper()
    target = load_target(target_file) if target_file else None
    inst = parse_values(installed, "--installed") if installed is not None else None
    if loss not in LOSS_CHOICES:
        raise InputError(f"--loss: unknown loss '{loss}' (known: {', '.join(LOSS_CHOICES)})")
    thr = _led_rule(led_threshold, led_vf)
    cap_tol = parse_cap_tolerance(cap_tolerance)
    lr_v = _positive(lr, "--lr", float) if lr is not None else None
    steps_v = int(_positive(steps, "--steps", int)) if steps is not None else None
    from hostctl.sessionlog import is_session, read_session

    net_circ = _netlist(netlist, circuit_name)
    use_bias(bias_ohm)
    if is_session(data):
        ms = read_session(data)
        if not (capacitance or circuit_name or netlist or priors or prior_file or fixed
                or loss != "auto" or led_threshold != DEFAULT_THRESHOLD_TEXT or led_vf
                or bias_ohm):
            # a calibrate session: re-fit and recommend exactly as the run did
            return _emit_session(ms, data, series, target, inst, as_json, cap_tol)
    else:
        ms = MeasurementSet.read_csv(data)
    if net_circ is not None:
        circ = get_circuit(net_circ.name)   # (with --bias-ohm, re-registered)
    else:
        circ = get_circuit(circuit_name or ms.meta.get("circuit") or _family_for(ms, data))
    if bias_ohm is not None:
        from hostctl.circuits.bias import check_bias

        check_bias(circ)
    cap_text = capacitance or ms.meta.get("capacitance") or "1e-6"
    caps = parse_capacitance(cap_text)
    if net_circ is not None and not capacitance:
        caps = capacitances(circ, {})   # the netlist's own capacitors
    check_capacitance(caps, circ)
    prior: dict[str, tuple[float, float]] = {}
    if prior_file:
        prior.update(_prior_file(prior_file))
    from hostctl.fit import fit, parse_prior
    from hostctl.ledrule import judged_on_volts

    for p in priors:
        name, spec = parse_prior(p)
        prior[name] = spec
    fixed_vals = parse_values(fixed, "--fixed") if fixed else None
    lit = ms.column("led") >= 0       # the LED rows (columns: no row object a row)
    if is_estimate(thr) and lit.any() and bool((ms.column("vin_v")[lit] > 0).all()):
        # estimated, still on volts: each LED row against its own tone's reference
        thr = judged_on_volts(thr)
    with _rows_named(data):
        # a preset's name stands for its family (the data weigh the builds); the user's
        # own netlist is the build on the bench, fitted as it is
        res = fit(ms, circ if net_circ is not None else circ.name, capacitance=caps,
                  led_threshold=thr, loss=loss, prior=prior or None, fixed=fixed_vals,
                  lr=lr_v, steps=steps_v)
    adv = _advise(res, ms, data, thr, led_vf is not None or bool(res.led_vf),
                  caps,
                  inst if inst is not None else _meta_installed(ms), target, series)
    _robust(res, adv, led_vf is None and led_threshold == DEFAULT_THRESHOLD_TEXT, cap_tol)
    _emit(res, adv, data, as_json)


def _robust(res: Any, adv: Any, vf_measured: bool, cap_tol: float | None) -> None:
    """The verdict calibrate gives: it must hold over what the data leave open (the
    capacitors' tolerance, the source's interval, a measured switching voltage's range)."""
    from hostctl.runconfig import RunConfig
    from hostctl.sessionfit import check_robust, measured_ranges

    ranges = measured_ranges(RunConfig(), res) if vf_measured else None
    check_robust(adv, get_circuit(res.circuit), ranges, cap_tol)


def _advise(res: Any, ms: MeasurementSet, data: str, rule: LedRule, on_volts: bool, caps: Any,
            installed_now: Any, target: Any, series: str | None) -> Any:
    """The parts to buy for the fitted board, its LEDs judged as the options say."""
    from hostctl.advice import advise

    thr_used, thr_src = _threshold_used(res, ms, rule, on_volts)
    drive, unknown = None, set()
    if on_volts:
        from hostctl.source import measured_drive

        try:
            drive = measured_drive(get_circuit(res.circuit), res, caps, ms.rows,
                                   res.led_vf or _volts(rule), installed=installed_now)
        except FitError as e:
            res.notes.append(f"LEDs judged on |H| at the median reference amplitude: {e}")
    elif is_estimate(rule) and not (res.led_thresholds or res.led_threshold):
        unknown = set(get_circuit(res.circuit).channels)   # nothing measured it
    return advise(get_circuit(res.circuit), target or _meta_target(ms, data),
                  series=series or "E24",
                  capacitance=caps, threshold=thr_used, threshold_source=thr_src,
                  installed=installed_now, fit=res, drive=drive, unknown_thresholds=unknown)


def _led_rule(led_threshold: str, led_vf: str | None) -> LedRule:
    """--led-threshold or --led-vf (the two exclude each other) as a rule."""
    if led_vf is not None:
        if led_threshold != DEFAULT_THRESHOLD_TEXT:
            raise InputError("give either --led-vf or --led-threshold, not both")
        return FromVf(parse_per_led(led_vf, "--led-vf"))
    if led_threshold == DEFAULT_THRESHOLD_TEXT:
        return Fixed(LED_THRESHOLD, given=False)
    return parse_rule(led_threshold, "--led-threshold")


def _volts(rule: LedRule) -> Any:
    return rule.volts if isinstance(rule, FromVf) else None


@contextlib.contextmanager
def _rows_named(data: str) -> Iterator[None]:
    """Fit errors name the data file; a bad row names its line in the file."""
    try:
        yield
    except FitError as e:
        raise FitError(f"{data}: {e}") from None
    except InputError as e:
        row = getattr(e, "row", None)
        if row is None:
            raise
        lines = _data_lines(data)
        line = lines[row] if row < len(lines) else None
        raise InputError(e.bare, data, line, e.column_name) from None  # type: ignore[attr-defined]


def _threshold_used(res: Any, ms: MeasurementSet, rule: LedRule, on_volts: bool
                    ) -> tuple[Any, str]:
    """The |H| threshold the LED maps use, and where it came from (for the report)."""
    if on_volts:   # on volts: the |H| threshold at the typical amplitude, for maps
        vf = res.led_vf or _volts(rule)
        vin = ms.column("vin_v")
        given = (vin != 0) & (vin == vin)      # a reference amplitude measured
        vins = (sorted(vin[given & (ms.column("led") >= 0)].tolist())
                or sorted(vin[given].tolist()) or [1.0])
        a = vins[len(vins) // 2]
        thr_used = ({k: v / a for k, v in vf.items()} if isinstance(vf, dict) else vf / a)
        how = ", estimated by the fit" if is_estimate(rule) else ""
        return thr_used, (f"LED rows judged on volts ({format_threshold(vf, 'g')} V{how}) "
                          f"against each tone's reference; bands at the median reference "
                          f"{a:.3f} V")
    if not isinstance(rule, Fixed):   # estimated by the fit
        thr_used = res.led_thresholds or res.led_threshold or LED_THRESHOLD
        return thr_used, "estimated by the fit (relative to 0 dBFS)"
    return rule.value, ("given (--led-threshold)" if rule.given
                        else "1/sqrt(2), the default (--led-threshold for your LEDs)")


def _netlist(path: str | None, circuit_name: str | None):
    """The user's netlist as the circuit (registered by name), or None."""
    if path is None:
        return None
    if circuit_name:
        raise InputError("give either --circuit or --netlist, not both")
    from hostctl.circuits import load_netlist

    return load_netlist(path)


def _families_by_channels() -> dict[frozenset[str], str]:
    """Which preset family the channels of a data file stand for, from the presets' own
    ``*@ channels`` (the first registered wins: a user's netlist does not take a preset's
    channels over)."""
    out: dict[frozenset[str], str] = {}
    for c in CIRCUITS.values():
        out.setdefault(frozenset(c.channels), c.family or c.name)
    return out


#: which preset family the channels of a data file stand for, when no circuit is named
FAMILY_BY_CHANNELS = _families_by_channels()


def _family_for(ms: MeasurementSet, data: str) -> str:
    """The preset family whose channels the data cover (the fit then picks the member)."""
    chans = frozenset(ms.channels)
    for have, fam in FAMILY_BY_CHANNELS.items():
        if chans == have:
            return fam
    raise InputError(f"channels {', '.join(sorted(chans)) or '(none)'} match no preset family "
                     "(low/band/high, or one of them): give --circuit or --netlist", data)


def _meta_target(ms: MeasurementSet, where: str):
    from hostctl.advice import target_from_meta
    from hostctl.target import default_target

    return target_from_meta(ms.meta, where) or default_target()


def _meta_installed(ms: MeasurementSet) -> dict[str, float]:
    text = ms.meta.get("installed", "")
    return parse_values(text, "'# installed:'") if text else {}


def _emit_session(ms: MeasurementSet, data: str, series: str | None, target, inst,
                  as_json: bool, cap_tol: float | None = None) -> None:
    """A calibrate session through the one recommendation path (overrides applied)."""
    from dataclasses import replace

    from hostctl.runconfig import config_from_meta
    from hostctl.sessionfit import advise_session

    given = {"series": series, "target": target, "installed": inst,
             "cap_tolerance": cap_tol}
    cfg = replace(config_from_meta(ms.meta), **{k: v for k, v in given.items()
                                                if v is not None})
    cfg.check()
    res, cfg, adv = advise_session(ms, cfg)
    _emit(res, adv, data, as_json, mode=cfg.mode)


def _emit(res, adv, data: str, as_json: bool, mode: str | None = None) -> None:
    """The table or the JSON object (report.json's shape, without a run) for one fit."""
    from hostctl.advice import fit_json
    from hostctl.runresult import REPORT_SCHEMA

    if as_json:
        out = {"schema": REPORT_SCHEMA, "circuit": res.circuit, "mode": mode, "source": data,
               "fit": fit_json(res), **adv.to_json()}
        click.echo(json.dumps(out, indent=2))
        _exit_if_untrusted(res, adv)
        return
    from hostctl.report import fit_table

    click.echo(fit_table(res, adv, head=(
        f"{data}: {res.n_gain} gain + {res.n_led} LED rows, method {res.method}, "
        f"{res.iterations} iterations, {1e3 * res.seconds:.0f} ms"
        + ("" if res.converged else " (NOT converged)"))))
    if res.led_thresholds:
        how = "estimated, at 0 dBFS" if res.led_threshold_estimated else "given"
        click.echo(f"LED thresholds ({how}): {format_threshold(res.led_thresholds, '.4g')}")
    elif res.led_threshold_estimated and res.led_threshold is not None:
        click.echo(f"LED threshold (estimated, at 0 dBFS): {res.led_threshold:.4g}")
    elif res.led_threshold_estimated and res.led_vf:
        click.echo("LED switching volts (estimated, against each tone's reference): "
                   f"{format_threshold(res.led_vf, '.4g')} V")
    _exit_if_untrusted(res, adv)


def _exit_if_untrusted(res, adv) -> None:
    """Exit 1 for a result the data contradict, advice that withholds a part (a section
    the data left open, an LED level never measured), or a target not known met (FAIL,
    or UNSURE: the verdict flips inside what the data leave open), as calibrate does:
    scripts must not take its values."""
    if not res.trusted or adv.held or adv.verdict != "PASS":
        raise SystemExit(1)


