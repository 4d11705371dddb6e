"""Text forms of settings (capacitances, resistor values, per-LED values): parsed and checked
here, below the CLI, because the session header stores the same text and is read back by the
library. ``option`` names what is being parsed in the messages (the caller's word for it).
"""

from __future__ import annotations

import math

from hostctl.circuits import Circuit
from hostctl.errors import InputError
from hostctl.files import ascii_float

#: Farads a capacitor may have: below a picofarad or above a farad is a unit mistake.
CAPACITANCE_RANGE = (1e-12, 1.0)


def parse_capacitance(text: str) -> float | dict[str, float]:
    """``1e-6`` for all sections, or ``C_low=1e-6,C_high=2.2e-6[,*=1e-6]`` per section."""
    def num(s: str, what: str) -> float:
        try:
            v = ascii_float(s)
        except ValueError:
            raise InputError(f"{{capacitance}}: '{s}' is not a number of farads ({what})"
                             ).naming() from None
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"{{capacitance}}: {what} must be a positive number of farads, "
                             f"got {s}").naming()
        lo, hi = CAPACITANCE_RANGE
        if not lo <= v <= hi:
            raise InputError(f"{{capacitance}}: {what} = {s} F is not a plausible capacitor "
                             "(1 pF..1 F)").naming()
        return v

    text = text.strip()
    if "=" not in text:
        return num(text, "value")
    out: dict[str, float] = {}
    for part in text.split(","):
        if "=" not in part:
            raise InputError(f"{{capacitance}}: '{part}' should be NAME=FARADS").naming()
        k, v = part.split("=", 1)
        if k.strip() in out:
            raise InputError(f"{{capacitance}}: '{k.strip()}' given twice").naming()
        out[k.strip()] = num(v.strip(), k.strip())
    return out


def check_capacitance(caps: float | dict[str, float], circ: Circuit,
                      option: str = "{capacitance}") -> None:
    """Every name given is a capacitor (or its resistor) of ``circ``: a typo such as
    ``C_hgh=`` would otherwise silently leave C_high at the default."""
    if not isinstance(caps, dict):
        return
    known = [n for r in circ.resistors for n in ("C" + r[1:], r)]
    for k in caps:
        if k != "*" and k not in known:
            names = ", ".join("C" + r[1:] for r in circ.resistors)
            raise InputError(f"{option}: '{k}' is not a capacitor of {circ.name} "
                             f"(known: {names}, or * for the rest)").naming()


def ohms(text: str) -> float:
    """``220``, ``2.2k``, ``1M`` -> ohm (ValueError if it is not a number): one reading of a
    resistance for every option that takes one."""
    mult = 1.0
    if text[-1:] in ("k", "K", "M"):
        mult = 1e3 if text[-1] in "kK" else 1e6
        text = text[:-1]
    return ascii_float(text) * mult


def parse_values(text: str, option: str) -> dict[str, float]:
    """``R_low=220,R_high=33`` (ohm; k/M suffixes allowed)."""
    out: dict[str, float] = {}
    for part in [p for p in text.split(",") if p.strip()]:
        if "=" not in part:
            raise InputError(f"{option}: '{part}' should be NAME=OHMS")
        k, v = (s.strip() for s in part.split("=", 1))
        try:
            val = ohms(v)
        except ValueError:
            raise InputError(f"{option}: '{part}' is not NAME=OHMS") from None
        if not (math.isfinite(val) and val > 0):
            raise InputError(f"{option}: {k} must be a positive resistance, got {v}")
        out[k] = val
    return out


def parse_per_led(text: str, option: str) -> float | dict[str, float]:
    """``0.3`` for every LED, or ``low=0.25,band=0.3,high=0.4`` per channel's LED (ranges
    and channel names are :func:`check_per_led`'s job, which knows the circuit)."""
    def num(s: str, what: str) -> float:
        try:
            return ascii_float(s)
        except ValueError:
            raise InputError(f"{option}: '{s}' is not a number ({what})").naming() from None

    text = str(text).strip()
    if "=" not in text:
        return num(text, "value")
    out: dict[str, float] = {}
    for part in [p for p in text.split(",") if p.strip()]:
        if "=" not in part:
            raise InputError(f"{option}: '{part}' should be CHANNEL=VALUE (e.g. low=0.3)"
                             ).naming()
        k, v = (s.strip() for s in part.split("=", 1))
        if k in out:
            raise InputError(f"{option}: channel '{k}' given twice").naming()
        out[k] = num(v, k)
    return out


def format_per_led(value: float | dict[str, float] | None) -> str:
    """The session-header form that :func:`parse_per_led` reads back."""
    if value is None:
        return ""
    if isinstance(value, dict):
        return ",".join(f"{k}={v!r}" for k, v in value.items())
    return repr(value)


def check_per_led(value: float | dict[str, float] | None, option: str, lo: float, hi: float,
                   unit: str, circ: Circuit) -> None:
    """One value for every LED, or one for each of the circuit's channels."""
    if value is None:
        return
    items = value.items() if isinstance(value, dict) else [("value", value)]
    for k, v in items:
        if isinstance(value, dict) and k not in circ.channels:
            raise InputError(f"{option}: '{k}' is not a channel of {circ.name} "
                             f"({', '.join(circ.channels)})").naming()
        if not (lo < v < hi):
            raise InputError(f"{option}: {k} must be in ({lo:g}, {hi:g}){unit}, got {v}"
                             ).naming()
    if isinstance(value, dict):
        missing = [c for c in circ.channels if c not in value]
        if missing:
            raise InputError(f"{option}: no value for channel {', '.join(missing)} (give one "
                             f"for each of {', '.join(circ.channels)}, or one for all)"
                             ).naming()
