"""Circuit models: component values -> what the probe measures, in torch float64.

Circuits are SPICE netlists (``presets/*.cir``, or a user's file): ``netlist`` parses
them, ``mna`` solves them (modified nodal analysis, differentiable), ``registry`` turns
them into :class:`Circuit` objects by name. ``closed_forms`` keeps the notebook's
hand-written transfer functions as a test oracle.
"""

from hostctl.circuits.closed_forms import NOTEBOOK_VALUES, highpass_mag, lowpass_mag
from hostctl.circuits.directives import Directives, Nuisance
from hostctl.circuits.netlist import Element, Netlist, parse_file, parse_text
from hostctl.circuits.registry import (
    CIRCUITS,
    DEFAULT_CAPACITANCE,
    LED_THRESHOLD,
    PRESETS_DIR,
    Circuit,
    Threshold,
    capacitances,
    channel_threshold,
    circuit,
    family,
    format_threshold,
    from_netlist,
    get_circuit,
    load_netlist,
)

__all__ = [
    "CIRCUITS", "DEFAULT_CAPACITANCE", "LED_THRESHOLD", "NOTEBOOK_VALUES", "PRESETS_DIR",
    "Circuit", "Directives", "Element", "Netlist", "Nuisance", "Threshold", "capacitances",
    "channel_threshold", "circuit", "family", "format_threshold", "from_netlist",
    "get_circuit", "highpass_mag", "load_netlist", "lowpass_mag", "parse_file", "parse_text",
]
