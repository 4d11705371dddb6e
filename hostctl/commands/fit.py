"""`hostctl fit`: component values (with 95% intervals) from a measurement CSV or session file."""

from __future__ import annotations

import json
import math
import tomllib
from pathlib import Path

import click

from hostctl.circuits import CIRCUITS, format_threshold, get_circuit
from hostctl.commands.options import parse_capacitance, parse_per_led, parse_values
from hostctl.errors import FitError, InputError
from hostctl.measurements import MeasurementSet

LOSS_CHOICES = ("auto", "notebook-mse", "notebook-weighted")


def _data_lines(path: str) -> list[int]:
    """Line numbers of the data rows (after the header), as MeasurementSet counts them."""
    try:
        text = Path(path).read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError):
        return []
    lines = [n for n, s in enumerate(text.splitlines(), start=1)
             if s.strip() and not s.strip().startswith("#")]
    return lines[1:]


DEFAULT_THRESHOLD_TEXT = "0.7071067811865476"


def _threshold(text: str) -> float | dict[str, float] | str:
    if text.strip().lower() in ("estimate", "estimate-each"):
        return text.strip().lower()
    if "=" in text:  # one per LED: low=0.5,band=0.6,high=0.8 (channels checked by the fit)
        return parse_per_led(text, "--led-threshold")
    try:
        t = float(text)
    except ValueError:
        raise InputError(f"--led-threshold: '{text}' is not a number, 'estimate' or "
                         "'estimate-each'") from None
    if not (math.isfinite(t) and t > 0):
        raise InputError(f"--led-threshold: must be a positive number, got {text}")
    return t


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

    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError("no such file", path) from None
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None
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


def _fmt(v: float) -> str:
    """Ohms with 5 significant digits (k/M suffixes): enough to see a 0.01% difference."""
    if not math.isfinite(v):
        return "inf" if v > 0 else "?"
    if v <= 0:
        return "0"
    for div, unit in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            return f"{v / div:.5g}{unit}"
    return f"{v:.5g}"


@click.command("fit")
@click.argument("data", type=str)
@click.option("--circuit", "circuit_name", default=None,
              help=f"Circuit preset ({', '.join(CIRCUITS)}). Default: the file's "
                   "'# circuit:' line.")
@click.option("--capacitance", default=None,
              help="Farads for every section, or C_low=1e-6,C_high=2.2e-6. Default: the "
                   "file's '# capacitance:' line, else 1e-6.")
@click.option("--led-threshold", "led_threshold", default=DEFAULT_THRESHOLD_TEXT,
              show_default="1/sqrt(2)",
              help="|H| at which an LED lights, one for all or per LED (low=0.5,band=0.6,"
                   "high=0.8), 'estimate' (one shared; needs level_dbfs rows) or "
                   "'estimate-each' (one per LED; needs gains too).")
@click.option("--series", default="E24", show_default=True,
              help="Standard series for the recommended part: E12, E24, E96.")
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
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def command(data: str, circuit_name: str | None, capacitance: str | None, led_threshold: str,
            series: str, loss: str, priors: tuple[str, ...], prior_file: str | None,
            fixed: str | None, lr: str | None, steps: str | None, as_json: bool) -> None:
    """Fit component values to a measurement CSV (or a session file)."""
    from hostctl.recommend import series_info

    series_info(series)
    series = series.upper()
    if loss not in LOSS_CHOICES:
        raise InputError(f"--loss: unknown loss '{loss}' (known: {', '.join(LOSS_CHOICES)})")
    thr = _threshold(led_threshold)
    lr_v = _positive(lr, "--lr", float) if lr is not None else None
    steps_v = int(_positive(steps, "--steps", int)) if steps is not None else None
    from hostctl.record import is_session, read_session

    if is_session(data):
        ms = read_session(data)
        if not (capacitance or circuit_name or priors or prior_file or fixed
                or loss != "auto" or led_threshold != DEFAULT_THRESHOLD_TEXT):
            # a calibrate session: re-fit it exactly as the run did (its mode and threshold)
            from hostctl.calibrate import refit

            return _emit(refit(ms), series, as_json)
    else:
        ms = MeasurementSet.read_csv(data)
    circuit_name = circuit_name or ms.meta.get("circuit") or _family_for(ms, data)
    circ = get_circuit(circuit_name)
    cap_text = capacitance or ms.meta.get("capacitance") or "1e-6"
    caps = parse_capacitance(cap_text)
    prior: dict[str, tuple[float, float]] = {}
    if prior_file:
        prior.update(_prior_file(prior_file))
    from hostctl.fit import fit, parse_prior

    for p in priors:
        name, spec = parse_prior(p)
        prior[name] = spec
    fixed_vals = parse_values(fixed, "--fixed") if fixed else None
    try:
        res = fit(ms, circ.name, capacitance=caps, led_threshold=thr, loss=loss,
                  prior=prior or None, fixed=fixed_vals, lr=lr_v, steps=steps_v)
    except FitError as e:
        raise FitError(f"{data}: {e}") from None
    except InputError as e:
        row = getattr(e, "row", None)
        if row is None:
            raise
        lines = _data_lines(data)
        line = lines[row] if row < len(lines) else None
        raise InputError(e.bare, data, line, e.column_name) from None  # type: ignore[attr-defined]
    _emit(res, series, as_json)


#: which preset family the channels of a data file stand for, when no circuit is named
FAMILY_BY_CHANNELS = {frozenset({"low", "band", "high"}): "color-organ",
                      frozenset({"low"}): "lowpass", frozenset({"band"}): "bandpass",
                      frozenset({"high"}): "highpass"}


def _family_for(ms: MeasurementSet, data: str) -> str:
    """The preset family whose channels the data cover (the fit then picks the member)."""
    chans = frozenset(m.channel for m in ms.rows)
    for have, fam in FAMILY_BY_CHANNELS.items():
        if chans == have:
            return fam
    raise InputError(f"channels {', '.join(sorted(chans)) or '(none)'} match no preset family "
                     "(low/band/high, or one of them): give --circuit or --netlist", data)


def _emit(res, series: str, as_json: bool) -> None:
    """The table or the JSON object for one fit."""
    from hostctl.recommend import snap

    circ = get_circuit(res.circuit)
    # no part for a value the data do not determine (open or missing interval)
    # and none at all for a result the data contradict (NOT TRUSTED)
    recommended = {r: snap(v, series) for r, v in res.values.items()
                   if res.trusted and math.isfinite(v) and v > 0
                   and res.ci_method.get(r) != "none"
                   and all(math.isfinite(x) and x > 0 for x in res.ci95[r])}
    if as_json:
        def num(v: float) -> float | None:
            return v if math.isfinite(v) else None

        out = {
            "circuit": circ.name,
            "components": {r: {"value_ohm": res.values[r],
                               "ci95_ohm": [num(res.ci95[r][0]), num(res.ci95[r][1])],
                               "corner_hz": res.corner_hz[r],
                               "ci_method": res.ci_method.get(r, "")}
                           for r in circ.resistors},
            "recommended": {r: {"value_ohm": v, "series": series,
                                "corner_hz": circ.corner_hz(r, v, res.capacitance)}
                            for r, v in recommended.items()},
            "fit": {"converged": res.converged, "iterations": res.iterations,
                    "seconds": res.seconds, "method": res.method, "loss": res.loss,
                    "warnings": res.warnings, "notes": res.notes,
                    "led_threshold": res.led_threshold,
                    "led_threshold_estimated": res.led_threshold_estimated,
                    "led_thresholds": res.led_thresholds, "trusted": res.trusted,
                    "n_gain": res.n_gain, "n_led": res.n_led,
                    "capacitance_f": res.capacitance},
        }
        click.echo(json.dumps(out, indent=2))
        _exit_if_untrusted(res)
        return
    click.echo(f"{circ.name}: {res.n_gain} gain + {res.n_led} LED rows, method {res.method}, "
               f"{res.iterations} iterations, {1e3 * res.seconds:.0f} ms"
               + ("" if res.converged else " (NOT converged)"))
    click.echo(f"{'component':<12} {'fitted':>10} {'95% interval':>23} {'corner':>12} "
               f"{'part (' + series + ')':>11}")
    for r in circ.resistors:
        lo, hi = res.ci95[r]
        mark = "*" if res.ci_method.get(r) == "data-consistent" else " "
        part = _fmt(recommended[r]) if r in recommended else "-"
        click.echo(f"{r:<12} {_fmt(res.values[r]):>10} {_fmt(lo):>10} .. {_fmt(hi):<9}{mark} "
                   f"{res.corner_hz[r]:>9.1f} Hz {part:>11}")
    if res.led_thresholds:
        how = "estimated, at 0 dBFS" if res.led_threshold_estimated else "given"
        click.echo(f"LED thresholds ({how}): {format_threshold(res.led_thresholds, '.4g')}")
    elif res.led_threshold_estimated and res.led_threshold is not None:
        click.echo(f"LED threshold (estimated, at 0 dBFS): {res.led_threshold:.4g}")
    for n in res.notes:
        click.echo(f"note: {n}")
    for w in res.warnings:
        click.echo(f"warning: {w}")
    if not res.trusted:
        click.echo("NOT TRUSTED: the data contradict the model (see the warnings); exit 1")
    _exit_if_untrusted(res)


def _exit_if_untrusted(res) -> None:
    """Exit 1 for a result the data contradict: scripts must not take its values."""
    if not res.trusted:
        raise SystemExit(1)


