"""Circuits by name: the netlist presets in ``presets/*.cir`` and any user netlist.

The fit engine, the simulated bench and the recommender only ever see :class:`Circuit`.
A netlist circuit's model solves the netlist (``mna``) and returns what the probe
measures, ``|V(node of the channel) / V(node of the reference)|``; a pure-Python model
(registered with :func:`circuit`) remains possible for teaching code.

Models take ``omega`` (rad/s) and parameter tensors that broadcast against it (scalars,
``(S, n)`` per-row copies, or ``(B, 1)`` for a batch of boards).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostctl.circuits.directives import Nuisance
from hostctl.circuits.netlist import Netlist, parse_file
from hostctl.errors import InputError

if TYPE_CHECKING:  # torch is imported lazily: `hostctl --help` must not pay for it
    import numpy as np
    import torch

    from hostctl.circuits.mna import MNA

PRESETS_DIR = Path(__file__).with_name("presets")
DEFAULT_CAPACITANCE = 1e-6
LED_THRESHOLD = 1 / math.sqrt(2)
#: An LED threshold on |H|: one number for every LED, or one per channel (a red, a green and
#: a blue LED switch at different voltages).
Threshold = float | Mapping[str, float]


def channel_threshold(threshold: Threshold, channel: str) -> float:
    """The threshold of one channel's LED."""
    if isinstance(threshold, Mapping):
        return float(threshold[channel])
    return float(threshold)


def format_threshold(threshold: Threshold, fmt: str = ".4f") -> str:
    """``0.5000`` or ``low 0.4000, band 0.5000, high 0.6000``."""
    if isinstance(threshold, Mapping):
        return ", ".join(f"{k} {float(v):{fmt}}" for k, v in threshold.items())
    return f"{float(threshold):{fmt}}"


ModelFn = Callable[["torch.Tensor", Mapping[str, "torch.Tensor"], Mapping[str, "torch.Tensor"]],
                   dict[str, "torch.Tensor"]]


@dataclass(frozen=True)
class Circuit:
    """A topology: its fitted resistors, its output channels and its model."""

    name: str
    resistors: tuple[str, ...]
    channels: tuple[str, ...]
    model: ModelFn
    doc: str = ""
    #: which channel each resistor shapes (for starting values and plots)
    sections: Mapping[str, tuple[str, str]] | None = None  # R -> (channel, "low"|"high")
    #: the parsed netlist (None for a pure-Python model)
    netlist: Netlist | None = None
    #: candidates a fit chooses between by the data share a family
    family: str | None = None
    #: parameters with a prior (nominal +- tolerance)
    nuisance: Mapping[str, Nuisance] = field(default_factory=dict)
    #: default value of every parameter (``.param`` spelling)
    params: Mapping[str, float] = field(default_factory=dict)
    #: probe channel -> node ("ref" the A0 reference) and LED channel -> node
    probe: Mapping[str, str] = field(default_factory=dict)
    leds: Mapping[str, str] = field(default_factory=dict)
    solver: MNA | None = field(default=None, repr=False, compare=False)

    def response(self, freq_hz, values: Mapping[str, object],
                 capacitance: float | Mapping[str, float] = DEFAULT_CAPACITANCE
                 ) -> dict[str, torch.Tensor]:
        """|H| per channel at ``freq_hz`` for resistor ``values`` (ohm); a netlist circuit
        also takes any other of its parameters in ``values`` (``R_source``, ...)."""
        import torch

        f = torch.as_tensor(freq_hz, dtype=torch.float64)
        omega = 2 * math.pi * f
        r = {k: torch.as_tensor(values[k], dtype=torch.float64) for k in self.resistors}
        if self.netlist is not None:
            r.update({k: torch.as_tensor(v, dtype=torch.float64) for k, v in values.items()
                      if k not in r and self.netlist.param(k) is not None})
        c = capacitances(self, capacitance)
        ct = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in c.items()}
        return self.model(omega, r, ct)

    def magnitude(self, freq_hz, values: Mapping[str, object],
                  capacitance: float | Mapping[str, float] = DEFAULT_CAPACITANCE
                  ) -> dict[str, np.ndarray]:
        """|H| per channel as numpy arrays, without torch (design, reports and plots need
        no autograd and must start fast): a netlist by the numpy solver."""
        import numpy as np

        if self.netlist is None:
            f = np.asarray(freq_hz, dtype=np.float64)
            r = {k: np.asarray(values[k], dtype=np.float64) for k in self.resistors}
            c = {k: np.asarray(v, dtype=np.float64)
                 for k, v in capacitances(self, capacitance).items()}
            try:
                out = self.model(2 * math.pi * f, r, c)
            except (AttributeError, TypeError):
                pass
            else:
                return {k: np.broadcast_to(np.asarray(v, dtype=np.float64), f.shape).copy()
                        for k, v in out.items()}
        if self.netlist is None:
            return {k: v.detach().numpy() for k, v in
                    self.response(freq_hz, values, capacitance).items()}
        f = np.asarray(freq_hz, dtype=np.float64)
        over = {k: v for k, v in values.items()
                if k in self.resistors or self.netlist.param(k) is not None}
        over = _overrides(self, over, capacitances(self, capacitance))
        chans = [self.probe[c] for c in self.channels]
        ref = self.probe.get("ref")
        V = np.abs(self.solver.solve_numpy(2 * math.pi * f, over, ([ref] if ref else []) + chans))
        off = 1 if ref else 0
        return {c: V[..., off + i] / V[..., 0] if ref else V[..., off + i]
                for i, c in enumerate(self.channels)}

    def node_voltages(self, omega, values: Mapping[str, Any] | None = None,
                      capacitance: Mapping[str, Any] | None = None,
                      nodes: Sequence[str] | None = None) -> dict[str, torch.Tensor]:
        """Complex voltage of each node (default: every LED node) per volt of the sources'
        AC amplitude as the netlist writes it (``Vs ... AC 1``: per volt of the source).

        ``values`` overrides any parameter; ``capacitance`` maps ``R_x`` -> C_x as in
        :attr:`model`. Shapes: ``omega`` and values broadcast to a batch shape.
        """
        if self.solver is None:
            raise InputError(f"circuit '{self.name}' has no netlist: no node voltages")
        nodes = list(self.leds.values()) if nodes is None else list(nodes)
        V = self.solver.solve(omega, _overrides(self, values or {}, capacitance or {}), nodes)
        return {n: V[..., i] for i, n in enumerate(nodes)}

    def corner_hz(self, resistor: str, value_ohm: float,
                  capacitance: float | Mapping[str, float] = DEFAULT_CAPACITANCE) -> float:
        """Corner frequency 1/(2 pi R C) of the section ``resistor`` belongs to."""
        c = capacitances(self, capacitance)[resistor]
        return 1.0 / (2 * math.pi * value_ohm * c)

    def resistor_for_corner(self, resistor: str, corner_hz: float,
                            capacitance: float | Mapping[str, float] = DEFAULT_CAPACITANCE
                            ) -> float:
        c = capacitances(self, capacitance)[resistor]
        return 1.0 / (2 * math.pi * corner_hz * c)


def capacitances(circ: Circuit, capacitance: float | Mapping[str, float]) -> dict[str, float]:
    """Capacitance paired with each resistor: one value for all, or per resistor.

    A mapping may name resistors (``R_low``) or capacitors (``C_low``); missing ones take
    the mapping's ``"*"`` entry, else the netlist's own ``C_x``, else the default.
    """
    if isinstance(capacitance, Mapping):
        out = {}
        for r in circ.resistors:
            cname = "C" + r[1:]
            default = capacitance.get("*", circ.params.get(cname, DEFAULT_CAPACITANCE))
            out[r] = float(capacitance.get(r, capacitance.get(cname, default)))
    else:
        out = {r: float(capacitance) for r in circ.resistors}
    for k, v in out.items():
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"capacitance for {k} must be a positive number of farads, got {v}")
    return out


def _overrides(circ: Circuit, R: Mapping[str, Any], C: Mapping[str, Any]) -> dict[str, Any]:
    """Parameter overrides: ``R`` names parameters; ``C`` maps ``R_x`` to ``C_x``."""
    net = circ.netlist
    assert net is not None
    out = dict(R)
    for r, c in C.items():
        cname = net.param("C" + r[1:]) if r[:1] in "Rr" else net.param(r)
        if cname is not None and cname not in out:
            out[cname] = c
    return out


def _netlist_model(circ_box: list[Circuit]) -> ModelFn:
    def model(omega, R, C):
        circ = circ_box[0]
        chans = [circ.probe[c] for c in circ.channels]
        ref = circ.probe.get("ref")
        V = circ.solver.solve(omega, _overrides(circ, R, C), ([ref] if ref else []) + chans)
        off = 1 if ref else 0
        mag = V.abs()
        out = {}
        for i, c in enumerate(circ.channels):
            out[c] = mag[..., off + i] / mag[..., 0] if ref else mag[..., off + i]
        return out

    return model


def from_netlist(net: Netlist, name: str | None = None, doc: str = "") -> Circuit:
    """The Circuit a netlist describes (its ``*@`` directives give names and roles)."""
    from hostctl.circuits.mna import MNA

    d = net.directives
    name = name or d.circuit or Path(net.path).stem
    if not d.channels or not [c for c in d.channels if c != "ref"]:
        raise InputError("needs '*@ channels ref=NODE CHANNEL=NODE ...' (which node each "
                         "probe input sees)", net.path)
    if not d.fit:
        raise InputError("needs '*@ fit NAME ...' (the parameters to fit)", net.path)
    box: list[Circuit] = []
    circ = Circuit(name, d.fit, tuple(c for c in d.channels if c != "ref"), _netlist_model(box),
                   doc, dict(d.sections), net, d.family or name, dict(d.nuisance),
                   dict(net.params), dict(d.channels), dict(d.leds), MNA(net))
    box.append(circ)
    return circ


def load_netlist(path: str | Path, register: bool = True) -> Circuit:
    """A user's netlist file as a Circuit (``--netlist``); bad files raise InputError.

    Registered under its name (``*@ circuit``, else the file's stem) so that everything
    that looks a circuit up by name (reports, re-fits) finds it; a preset's name is taken.
    """
    net = parse_file(path)
    circ = from_netlist(net, doc=_title(Path(path)))
    if register:
        old = CIRCUITS.get(circ.name)
        if old is not None and (old.netlist is None
                                or Path(old.netlist.path).resolve() != Path(path).resolve()):
            raise InputError(f"circuit name '{circ.name}' is taken by a preset: name yours "
                             "with '*@ circuit NAME'", str(path))
        CIRCUITS[circ.name] = circ
    return circ


def _title(p: Path) -> str:
    try:
        first = p.read_text(encoding="utf-8-sig").splitlines()[0]
    except (OSError, UnicodeDecodeError, IndexError):
        return ""
    return first.lstrip("*").strip()


CIRCUITS: dict[str, Circuit] = {}


def circuit(name: str, resistors: tuple[str, ...], channels: tuple[str, ...],
            sections: Mapping[str, tuple[str, str]] | None = None):
    """Register a pure-Python model function as a circuit."""

    def deco(fn: ModelFn) -> ModelFn:
        CIRCUITS[name] = Circuit(name, resistors, channels, fn, (fn.__doc__ or "").strip(),
                                 dict(sections or {}))
        return fn

    return deco


def get_circuit(name: str) -> Circuit:
    try:
        return CIRCUITS[name]
    except KeyError:
        raise InputError(f"unknown circuit '{name}' (known: {', '.join(CIRCUITS)})") from None


def family(name: str) -> list[Circuit]:
    """Every registered circuit of a family (a circuit's name or the family's name)."""
    fam = CIRCUITS[name].family if name in CIRCUITS else name
    return [c for c in CIRCUITS.values() if c.family == fam]


def _load_presets() -> None:
    order = ["lowpass", "highpass", "bandpass", "bandpass-unbuffered", "color-organ",
             "color-organ-passive"]
    files = sorted(PRESETS_DIR.glob("*.cir"),
                   key=lambda p: (p.stem.endswith("-ideal"),
                                  order.index(p.stem.removesuffix("-ideal"))
                                  if p.stem.removesuffix("-ideal") in order else 99, p.stem))
    for p in files:
        if "*@ circuit" not in p.read_text(encoding="utf-8"):
            continue  # a part other netlists include (probe.cir)
        net = parse_file(p)
        CIRCUITS[net.directives.circuit or p.stem] = from_netlist(net, doc=_title(p))


_load_presets()
