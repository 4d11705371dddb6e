"""The probe front end's bias resistors as built (``--bias-ohm``).

Every preset with the probe includes ``probe.cir``, whose ``R_bias_top`` / ``R_bias_bot``
(20k / 20k, as ``firmware/README.md`` wires them) load each node the probe taps: ~1.5 %
on a 160 ohm section. A board wired with other resistors is fitted with its own values by
re-registering, for one command, every circuit that has them with those defaults.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

from hostctl.circuits import expr as ex
from hostctl.circuits.registry import CIRCUITS, Circuit, from_netlist
from hostctl.errors import InputError

BIAS = ("R_bias_top", "R_bias_bot")
#: what a bias resistor can sensibly be (ohms)
BIAS_RANGE = (1.0, 1e8)
#: ohms as a part is labelled: 20000, 20k, 4.7k, 1meg, with an optional "ohm"
_OHMS = re.compile(r"([+-]?(?:\d+\.?\d*|\.\d+)(?:e[+-]?\d+)?(?:k|meg)?)\s*(?:ohms?)?", re.I)


def parse_bias(text: str, option: str = "{bias_ohm}") -> tuple[float, float]:
    """``20k`` (both resistors) or ``22k/18k`` (top/bottom) -> ohms; InputError else."""
    parts = str(text).split("/")
    hint = f"{option}: '{text}' is not a bias resistance (ohms: 20k, or top/bottom 22k/18k)"
    if not 1 <= len(parts) <= 2 or not all(_OHMS.fullmatch(p.strip()) for p in parts):
        raise InputError(hint).naming()
    vals = [ex.parse_number(_OHMS.fullmatch(p.strip()).group(1)) for p in parts]
    lo, hi = BIAS_RANGE
    if not all(math.isfinite(v) and lo <= v <= hi for v in vals):
        raise InputError(f"{option}: '{text}' is outside {lo:g}..{hi:g} ohm").naming()
    return vals[0], vals[-1]


def with_params(circ: Circuit, values: Mapping[str, float]) -> Circuit:
    """The same circuit with other ``.param`` defaults (same name, new solver)."""
    net = circ.netlist
    assert net is not None
    exprs = dict(net.param_exprs)
    for k, v in values.items():
        exprs[k.lower()] = repr(float(v))
    env: dict[str, float] = {}
    todo = list(exprs)
    while todo:   # dependency order: a name is evaluated once all it reads are
        k = todo.pop(0)
        if (ex.names(exprs[k]) & exprs.keys()) - env.keys():
            todo.append(k)
            continue
        env[k] = float(ex.evaluate(exprs[k], env))
    params = {net.names.get(k, k): env[k] for k in exprs}
    return from_netlist(dataclasses.replace(net, param_exprs=exprs, params=params),
                        circ.name, circ.doc)


@contextmanager
def probe_bias(top: float, bottom: float) -> Iterator[list[str]]:
    """Every registered circuit with the probe's bias resistors set to ``top``/``bottom``
    while the block runs (the names it changed); the presets come back after."""
    old = {n: c for n, c in CIRCUITS.items()
           if c.netlist is not None and all(c.netlist.param(k) for k in BIAS)}
    for n, c in old.items():
        CIRCUITS[n] = with_params(c, dict(zip(BIAS, (top, bottom), strict=True)))
    try:
        yield list(old)
    finally:
        CIRCUITS.update(old)


def check_bias(circ: Circuit, option: str = "{bias_ohm}") -> None:
    """A circuit the option cannot reach is an error, not a silent no-op."""
    if circ.netlist is None or not all(circ.netlist.param(k) for k in BIAS):
        raise InputError(f"{option}: circuit '{circ.name}' has no probe bias resistors "
                         f"({', '.join(BIAS)}; an ideal preset has no probe)").naming()
