"""Options shared by several commands, parsed once and validated with clear messages."""

from __future__ import annotations

import math

import click

from hostctl.errors import InputError
from hostctl.files import ascii_float
from hostctl.recommend import series_info
from hostctl.values import (  # noqa: F401 (the commands import them from here too)
    CAPACITANCE_RANGE,
    check_capacitance,
    check_per_led,
    format_per_led,
    parse_capacitance,
    parse_per_led,
    parse_values,
)


class AsciiNumber(click.ParamType):
    """A number option in ASCII decimal notation only (``1_000`` and digits of other
    scripts are refused like any non-number), optionally whole and within [lo, hi]."""

    name = "number"

    def __init__(self, whole: bool = False, lo: float | None = None,
                 hi: float | None = None) -> None:
        self.whole, self.lo, self.hi = whole, lo, hi
        if whole:
            self.name = "integer"

    def convert(self, value: object, param: click.Parameter | None,
                ctx: click.Context | None) -> float | int:
        if isinstance(value, int | float) and not isinstance(value, bool):
            v = float(value)
        else:
            try:
                v = ascii_float(str(value))
            except ValueError:
                self.fail(f"'{value}' is not {'an integer' if self.whole else 'a number'} "
                          "(ASCII digits, no '_')", param, ctx)
        if not math.isfinite(v) or (self.whole and v != int(v)):
            self.fail(f"'{value}' is not a finite {self.name}", param, ctx)
        if (self.lo is not None and v < self.lo) or (self.hi is not None and v > self.hi):
            lo = "" if self.lo is None else f"{self.lo:g}"
            hi = "" if self.hi is None else f"{self.hi:g}"
            self.fail(f"{value} is not in the range {lo}..{hi}", param, ctx)
        return int(v) if self.whole else v


def _check_series(ctx: click.Context, param: click.Parameter, value: str) -> str:
    series_info(value)
    return value.upper()


capacitance_option = click.option(
    "--capacitance", default="1e-6", show_default=True,
    help="Capacitance in farads for every section, or per section: C_low=1e-6,C_high=2.2e-6.")
series_option = click.option(
    "--series", default="E24", show_default=True, callback=_check_series,
    help="Standard series for recommendations: E12, E24, E96.")


bias_option = click.option(
    "--bias-ohm", "bias_ohm", default=None,
    help="The probe's bias resistors as wired: 20k for both (the default, as "
         "firmware/README.md wires them), or top/bottom 22k/18k.")


def use_bias(text: str | None, circuit: str | None = None) -> None:
    """``--bias-ohm`` for the rest of this command: every circuit with the probe's bias
    resistors takes them (the presets come back when the command ends); ``circuit``, when
    named, must have them."""
    if text is None:
        return
    from hostctl.circuits import get_circuit
    from hostctl.circuits.bias import check_bias, parse_bias, probe_bias

    click.get_current_context().with_resource(probe_bias(*parse_bias(text)))
    if circuit is not None:
        check_bias(get_circuit(circuit))


def parse_cap_tolerance(text: str | None) -> float | None:
    """``--cap-tolerance PCT`` ("5" or "5%") as a fraction; None when not given (the
    verdict then allows 5 % with --installed, else 10 %)."""
    if text is None:
        return None
    t = text.strip()
    try:
        v = ascii_float(t[:-1] if t.endswith("%") else t)
    except ValueError:
        raise InputError(f"--cap-tolerance: '{text}' is not a percentage like 5 "
                               "or 5%") from None
    if not (math.isfinite(v) and 0 <= v <= 50):
        raise InputError(f"--cap-tolerance: {text} is not in the range 0..50 (%)")
    return v / 100


cap_tolerance_option = click.option(
    "--cap-tolerance", "cap_tolerance", default=None, metavar="PCT",
    help="What the verdict allows each capacitor, in % (a PASS must hold over it). "
         "Default: 5 with --installed (the capacitors are known through those resistors), "
         "else 10.")
