"""Circuit models: component values -> |H| per channel, in torch float64.

Each preset is one function registered with :func:`circuit`; the fit engine, the
simulated bench and the recommender only ever see :class:`Circuit`, so a new topology
is one new entry here. Every resistor ``R_x`` is paired with a capacitor (``C`` of its
section); its corner is ``1 / (2 pi R C)``.

Models take ``omega`` (rad/s, shape ``(n,)``) and per-resistor tensors that broadcast
against it (scalars, or shape ``(b, 1)`` for a batch of boards).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hostctl.errors import InputError

if TYPE_CHECKING:  # torch is imported lazily: `hostctl --help` must not pay for it
    import numpy as np
    import torch

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
    """A registered topology: its resistors, its output channels and its model."""

    name: str
    resistors: tuple[str, ...]
    channels: tuple[str, ...]
    model: ModelFn
    doc: str = ""
    #: which channel each resistor shapes (for starting values and plots)
    sections: Mapping[str, tuple[str, str]] | None = None  # R -> (channel, "low"|"high")

    def response(self, freq_hz, values: Mapping[str, object],
                 capacitance: float | Mapping[str, float] = DEFAULT_CAPACITANCE
                 ) -> dict[str, torch.Tensor]:
        """|H| per channel at ``freq_hz`` for resistor ``values`` (ohm)."""
        import torch

        f = torch.as_tensor(freq_hz, dtype=torch.float64)
        omega = 2 * math.pi * f
        r = {k: torch.as_tensor(values[k], dtype=torch.float64) for k in self.resistors}
        c = capacitances(self, capacitance)
        ct = {k: torch.as_tensor(v, dtype=torch.float64) for k, v in c.items()}
        return self.model(omega, r, ct)

    def magnitude(self, freq_hz, values: Mapping[str, object],
                  capacitance: float | Mapping[str, float] = DEFAULT_CAPACITANCE
                  ) -> dict[str, np.ndarray]:
        """|H| per channel as numpy arrays, without torch (design, reports and plots need
        no autograd and must start fast); a model that needs torch ops gets torch."""
        import numpy as np

        f = np.asarray(freq_hz, dtype=np.float64)
        r = {k: np.asarray(values[k], dtype=np.float64) for k in self.resistors}
        c = {k: np.asarray(v, dtype=np.float64) for k, v in capacitances(self, capacitance).items()}
        try:
            out = self.model(2 * math.pi * f, r, c)
        except (AttributeError, TypeError):
            return {k: v.detach().numpy() for k, v in
                    self.response(freq_hz, values, capacitance).items()}
        return {k: np.broadcast_to(np.asarray(v, dtype=np.float64), f.shape).copy()
                for k, v in out.items()}

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
    the mapping's ``"*"`` entry or the default.
    """
    if isinstance(capacitance, Mapping):
        default = float(capacitance.get("*", DEFAULT_CAPACITANCE))
        out = {}
        for r in circ.resistors:
            cname = "C" + r[1:]
            out[r] = float(capacitance.get(r, capacitance.get(cname, default)))
    else:
        out = {r: float(capacitance) for r in circ.resistors}
    for k, v in out.items():
        if not (math.isfinite(v) and v > 0):
            raise InputError(f"capacitance for {k} must be a positive number of farads, got {v}")
    return out


CIRCUITS: dict[str, Circuit] = {}


def circuit(name: str, resistors: tuple[str, ...], channels: tuple[str, ...],
            sections: Mapping[str, tuple[str, str]] | None = None):
    """Register a model function as a circuit preset."""

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


# --- building blocks: buffered first-order sections -------------------------------------

def _sqrt(x):
    """sqrt of a torch tensor (autograd) or of a numpy array/float (no torch needed)."""
    return x.sqrt() if hasattr(x, "sqrt") else x ** 0.5


def lowpass_mag(omega, r, c):
    x = r * c * omega
    return 1.0 / _sqrt(1.0 + x * x)


def highpass_mag(omega, r, c):
    x = r * c * omega
    return x / _sqrt(1.0 + x * x)


# --- presets -------------------------------------------------------------------------

@circuit("lowpass", ("R_low",), ("low",), {"R_low": ("low", "low")})
def _lowpass(omega, R, C):
    """First-order RC low-pass (bass LED)."""
    return {"low": lowpass_mag(omega, R["R_low"], C["R_low"])}


@circuit("highpass", ("R_high",), ("high",), {"R_high": ("high", "high")})
def _highpass(omega, R, C):
    """First-order RC high-pass (treble LED)."""
    return {"high": highpass_mag(omega, R["R_high"], C["R_high"])}


@circuit("bandpass", ("R_band_low", "R_band_high"), ("band",),
         {"R_band_low": ("band", "low"), "R_band_high": ("band", "high")})
def _bandpass(omega, R, C):
    """Buffered low-pass(R_band_low) x high-pass(R_band_high), as in the notebook."""
    return {"band": lowpass_mag(omega, R["R_band_low"], C["R_band_low"])
            * highpass_mag(omega, R["R_band_high"], C["R_band_high"])}


@circuit("color-organ", ("R_low", "R_band_low", "R_band_high", "R_high"),
         ("low", "band", "high"),
         {"R_low": ("low", "low"), "R_band_low": ("band", "low"),
          "R_band_high": ("band", "high"), "R_high": ("high", "high")})
def _color_organ(omega, R, C):
    """The notebook's color organ: low-pass, buffered band-pass and high-pass channels."""
    out = {}
    out.update(_lowpass(omega, R, C))
    out.update(_bandpass(omega, R, C))
    out.update(_highpass(omega, R, C))
    return out


@circuit("bandpass-unbuffered", ("R_band_low", "R_band_high"), ("band",),
         {"R_band_low": ("band", "low"), "R_band_high": ("band", "high")})
def _bandpass_unbuffered(omega, R, C):
    """Low-pass RC followed by a high-pass CR with no buffer: the second loads the first.

    H = 1 / (1 + a + 1/(j b) + a/(j b) ... ) solved exactly: with Z1 = R1, shunt C1,
    series C2, shunt R2, |H| = |j wR2C2| / |(1 + j wR1C1)(1 + j wR2C2) + j wR1C2|.
    """
    a = omega * R["R_band_low"] * C["R_band_low"]
    b = omega * R["R_band_high"] * C["R_band_high"]
    c = omega * R["R_band_low"] * C["R_band_high"]
    re = 1.0 - a * b
    im = a + b + c
    return {"band": b / _sqrt(re * re + im * im)}


# The notebook's target values, R = 1/(2 pi f C) at C = 1 uF.
NOTEBOOK_VALUES = {
    "R_low": 1 / (2 * math.pi * 800 * 1e-6),
    "R_band_low": 1 / (2 * math.pi * 4000 * 1e-6),
    "R_band_high": 1 / (2 * math.pi * 1000 * 1e-6),
    "R_high": 1 / (2 * math.pi * 5000 * 1e-6),
}
