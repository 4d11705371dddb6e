"""Hand-written |H| of the ideal presets: a test oracle for the nodal solver, and the
course notebook's formulas (buffered first-order sections, no probe, no source resistance).

Each function takes ``omega`` (rad/s) and resistor/capacitance tensors keyed by resistor
name (``C["R_low"]`` is C_low), as the fit's models did before circuits became netlists.
"""

from __future__ import annotations

import math


def _sqrt(x):
    """sqrt of a torch tensor (autograd) or of a numpy array/float (no torch needed)."""
    return x.sqrt() if hasattr(x, "sqrt") else x ** 0.5


def lowpass_mag(omega, r, c):
    x = r * c * omega
    return 1.0 / _sqrt(1.0 + x * x)


def highpass_mag(omega, r, c):
    x = r * c * omega
    return x / _sqrt(1.0 + x * x)


def lowpass(omega, R, C):
    """First-order RC low-pass (bass LED)."""
    return {"low": lowpass_mag(omega, R["R_low"], C["R_low"])}


def highpass(omega, R, C):
    """First-order RC high-pass (treble LED)."""
    return {"high": highpass_mag(omega, R["R_high"], C["R_high"])}


def bandpass(omega, R, C):
    """Buffered low-pass(R_band_low) x high-pass(R_band_high), as in the notebook."""
    return {"band": lowpass_mag(omega, R["R_band_low"], C["R_band_low"])
            * highpass_mag(omega, R["R_band_high"], C["R_band_high"])}


def bandpass_unbuffered(omega, R, C):
    """Low-pass RC followed by a high-pass CR with no buffer: the second loads the first.

    With Z1 = R1, shunt C1, series C2, shunt R2:
    |H| = |j wR2C2| / |(1 + j wR1C1)(1 + j wR2C2) + j wR1C2|.
    """
    a = omega * R["R_band_low"] * C["R_band_low"]
    b = omega * R["R_band_high"] * C["R_band_high"]
    c = omega * R["R_band_low"] * C["R_band_high"]
    re = 1.0 - a * b
    im = a + b + c
    return {"band": b / _sqrt(re * re + im * im)}


def color_organ(omega, R, C):
    """The notebook's color organ: low-pass, buffered band-pass and high-pass channels."""
    return {**lowpass(omega, R, C), **bandpass(omega, R, C), **highpass(omega, R, C)}


def color_organ_passive(omega, R, C):
    """The color organ with its band-pass built passive."""
    return {**lowpass(omega, R, C), **bandpass_unbuffered(omega, R, C),
            **highpass(omega, R, C)}


#: ideal preset -> its closed form
CLOSED_FORMS = {
    "lowpass-ideal": lowpass, "highpass-ideal": highpass, "bandpass-ideal": bandpass,
    "bandpass-unbuffered-ideal": bandpass_unbuffered, "color-organ-ideal": color_organ,
    "color-organ-passive-ideal": color_organ_passive,
}

# The notebook's target values, R = 1/(2 pi f C) at C = 1 uF.
NOTEBOOK_VALUES = {
    "R_low": 1 / (2 * math.pi * 800 * 1e-6),
    "R_band_low": 1 / (2 * math.pi * 4000 * 1e-6),
    "R_band_high": 1 / (2 * math.pi * 1000 * 1e-6),
    "R_high": 1 / (2 * math.pi * 5000 * 1e-6),
}
