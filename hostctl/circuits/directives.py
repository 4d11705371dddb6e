"""hostctl's ``*@`` directives: what a netlist means to the probe and to the fit.

ngspice reads them as comments; hostctl reads the circuit's name and family, which probe
channel and which LED sees which node, which parameters are fitted, which are nuisances
with a prior, and which resistor shapes which channel (see ``presets/README.md``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from hostctl.circuits import expr as ex

if TYPE_CHECKING:
    from hostctl.circuits.netlist import Netlist


@dataclass(frozen=True)
class Nuisance:
    """A parameter with a prior: ``nominal +- tolerance`` (absolute, the parameter's unit)."""

    name: str
    nominal: float
    tolerance: float

    @property
    def relative(self) -> float:
        return self.tolerance / abs(self.nominal) if self.nominal else float("inf")


@dataclass(frozen=True)
class Directives:
    circuit: str | None = None
    family: str | None = None
    #: probe channel -> node; "ref" is the reference input (A0)
    channels: dict[str, str] = field(default_factory=dict)
    #: LED channel -> node whose voltage the LED sees
    leds: dict[str, str] = field(default_factory=dict)
    fit: tuple[str, ...] = ()
    nuisance: dict[str, Nuisance] = field(default_factory=dict)
    #: resistor -> (channel it shapes, "low" | "high")
    sections: dict[str, tuple[str, str]] = field(default_factory=dict)
    #: directives hostctl does not know (kept for other readers: boards, tolerances)
    extra: tuple[tuple[str, tuple[str, ...]], ...] = ()


def _mapping(key: str, args: list[str]) -> dict[str, str]:
    out = {}
    for a in args:
        k, eq, v = a.partition("=")
        if not eq or not k or not v:
            raise ValueError(f"*@ {key}: '{a}' is not CHANNEL=NODE")
        if k in out:
            raise ValueError(f"*@ {key}: '{k}' given twice")
        out[k] = v.lower()
    if not out:
        raise ValueError(f"*@ {key} needs CHANNEL=NODE pairs")
    return out


def _tolerance(text: str, nominal: float) -> float:
    t = text.strip()
    if t.endswith("%"):
        return abs(nominal) * ex.parse_number(t[:-1]) / 100.0
    return ex.parse_number(t)


def parse_directive(d: Directives, text: str) -> Directives:
    """``d`` updated with one ``*@`` line's text (without the ``*@``)."""
    parts = text.split()
    if not parts:
        raise ValueError("empty *@ directive")
    key, args = parts[0].lower(), parts[1:]
    rep = dataclasses.replace
    if key in ("circuit", "family"):
        if len(args) != 1:
            raise ValueError(f"*@ {key} takes one name")
        if getattr(d, key) is not None:
            raise ValueError(f"*@ {key} given twice")
        return rep(d, **{key: args[0]})
    if key in ("channels", "leds"):
        if getattr(d, key):
            raise ValueError(f"*@ {key} given twice")
        return rep(d, **{key: _mapping(key, args)})
    if key == "fit":
        if not args:
            raise ValueError("*@ fit needs parameter names")
        return rep(d, fit=d.fit + tuple(args))
    if key == "nuisance":
        if len(args) != 3:
            raise ValueError("*@ nuisance takes NAME NOMINAL TOLERANCE (e.g. R_bias_top 20k 5%)")
        try:
            nom = ex.parse_number(args[1])
            tol = _tolerance(args[2], nom)
        except ex.ExprError as e:
            raise ValueError(f"*@ nuisance {args[0]}: {e}") from None
        if not tol > 0:
            raise ValueError(f"*@ nuisance {args[0]}: tolerance must be positive")
        return rep(d, nuisance={**d.nuisance, args[0]: Nuisance(args[0], nom, tol)})
    if key == "section":
        if len(args) != 3 or args[2].lower() not in ("low", "high"):
            raise ValueError("*@ section takes RESISTOR CHANNEL low|high")
        return rep(d, sections={**d.sections, args[0]: (args[1], args[2].lower())})
    return rep(d, extra=d.extra + ((key, tuple(args)),))


def validate(d: Directives, net: Netlist) -> Directives:
    """Check names against the netlist; parameters take their ``.param`` spelling."""
    nodes = set(net.nodes) | {"0"}

    def param(name: str, what: str) -> str:
        p = net.param(name)
        if p is None:
            raise ValueError(f"*@ {what}: '{name}' is not a .param of this netlist")
        return p

    for key in ("channels", "leds"):
        for ch, n in getattr(d, key).items():
            if n not in nodes:
                raise ValueError(f"*@ {key}: {ch}={n}: no node '{n}' in the circuit")
    fit = tuple(param(n, "fit") for n in d.fit)
    if len(set(fit)) != len(fit):
        raise ValueError("*@ fit names a parameter twice")
    nuis = {param(k, "nuisance"): dataclasses.replace(v, name=param(k, "nuisance"))
            for k, v in d.nuisance.items()}
    outs = [c for c in d.channels if c != "ref"]
    secs = {}
    for r, (ch, side) in d.sections.items():
        if d.channels and ch not in outs:
            raise ValueError(f"*@ section {r}: '{ch}' is not a channel ({', '.join(outs)})")
        secs[param(r, "section")] = (ch, side)
    return dataclasses.replace(d, fit=fit, nuisance=nuis, sections=secs)


#: The probe reads three outputs: analog inputs A1..A3 (nodes ``a1``..``a3`` of
#: ``presets/probe.cir``; A0 is the reference), each with its LED on the digital input beside
#: it (A1 -> D2). A netlist that names the filter's own nodes instead (an ideal preset) is
#: read as the color organ is wired: low on A1, band on A2, high on A3.
PROBE_INPUTS = 3
COLOR_ORGAN_WIRING = {"low": 1, "band": 2, "high": 3}


def probe_inputs(channels: Sequence[str], probe: Mapping[str, str]) -> dict[str, int]:
    """Which probe input (1..3: A1..A3, its LED on D2..D4) reads each channel, in input
    order: the ``*@ channels`` node ``aK`` where the netlist names the probe's own input,
    else the color organ's wiring, else the next free input."""
    out: dict[str, int] = {}
    for ch in channels:
        node = probe.get(ch, "")
        if len(node) == 2 and node[0] == "a" and node[1] in "123":
            out[ch] = int(node[1])
    for ch in channels:
        k = COLOR_ORGAN_WIRING.get(ch)
        if ch not in out and k is not None and k not in out.values():
            out[ch] = k
    free = [k for k in range(1, PROBE_INPUTS + 1) if k not in out.values()]
    for ch in channels:
        if ch not in out:
            if not free:
                raise ValueError(f"channel '{ch}': the probe reads only {PROBE_INPUTS} outputs")
            out[ch] = free.pop(0)
    return dict(sorted(out.items(), key=lambda kv: kv[1]))
