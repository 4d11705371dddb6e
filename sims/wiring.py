"""Wiring faults of the virtual bench: what a miswired probe shows (for `hostctl check`).

Items of the ``faults=`` grammar (sims/faults.py) that change what the ADC pins read::

    dead:A2         the pin sees no signal, only its bias (a broken filter-output wire)
    noref           A0 sees no tone (the sound card cable is not on the filter input)
    bias:A1=0.4     the pin's DC level is 0.4 V instead of mid-rail (bias network wrong)
    swap:A1-A3      the wires to two pins are exchanged (outputs swapped)

Applied to the counts of each MEASURE window after the physics, so they combine with the
link faults and any board.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np

from hostctl.errors import InputError

GRAMMAR = "dead:A<n>, noref, bias:A<n>=VOLTS, swap:A<n>-A<m> (n, m in 0..3)"
_PIN = r"A([0-3])"


@dataclass
class Wiring:
    dead: set[int] = field(default_factory=set)
    bias_v: dict[int, float] = field(default_factory=dict)
    swaps: list[tuple[int, int]] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.dead or self.bias_v or self.swaps)

    def __str__(self) -> str:
        items = ["noref" if p == 0 else f"dead:A{p}" for p in sorted(self.dead)]
        items += [f"bias:A{p}={v!r}" for p, v in sorted(self.bias_v.items())]
        items += [f"swap:A{a}-A{b}" for a, b in self.swaps]
        return ",".join(items)


def is_wiring(item: str) -> bool:
    return item == "noref" or item.startswith(("dead:", "bias:", "swap:"))


def parse_item(w: Wiring, item: str, spec: str) -> None:
    """Add one grammar item to ``w``; InputError naming it when it is malformed."""
    if item == "noref":
        w.dead.add(0)
        return
    m = (re.fullmatch(rf"dead:{_PIN}", item) or re.fullmatch(rf"bias:{_PIN}=(.+)", item)
         or re.fullmatch(rf"swap:{_PIN}-{_PIN}", item))
    if m is None:
        raise InputError(f"faults '{spec}': bad wiring item '{item}' (grammar: {GRAMMAR})")
    kind = item.split(":", 1)[0]
    if kind == "dead":
        w.dead.add(int(m.group(1)))
    elif kind == "bias":
        try:
            v = float(m.group(2))
        except ValueError:
            v = math.nan
        if not (math.isfinite(v) and 0 <= v <= 5):
            raise InputError(f"faults '{spec}': bias '{m.group(2)}' is not 0..5 V")
        w.bias_v[int(m.group(1))] = v
    else:
        a, b = int(m.group(1)), int(m.group(2))
        if a == b:
            raise InputError(f"faults '{spec}': swap needs two different pins")
        w.swaps.append((a, b))


def apply(w: Wiring, analog: list[np.ndarray], bias_v: float, vref_v: float,
          adc_bits: int) -> list[np.ndarray]:
    """The counts the pins read with this wiring (``analog``: A0..A3 as wired right)."""
    if not w:
        return analog
    out = list(analog)
    scale, top = 2 ** adc_bits / vref_v, 2 ** adc_bits - 1
    for a, b in w.swaps:
        out[a], out[b] = out[b], out[a]
    for p in w.dead:   # only the bias is left
        out[p] = np.full(out[p].size, math.floor(bias_v * scale), dtype=np.int64)
    for p, v in w.bias_v.items():
        out[p] = np.clip(out[p] + round((v - bias_v) * scale), 0, top).astype(np.int64)
    return out
