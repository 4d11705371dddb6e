"""The wiring check: play tones, read the probe, and judge each item PASS or FAIL.

What a student otherwise does by hand with `probe` and `tone` in two terminals: silence
(every pin's bias, LEDs dark), a 1 kHz tone (the reference on A0: present, in range, not
clipping), then one tone in each channel's passband (each output alive, shaped like its
filter, not clipping; each LED lights). Every FAIL names the likely cause and the fix.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PINS = ("A0", "A1", "A2", "A3")
LED_PINS = ("D2", "D3", "D4")
#: channel -> (its ADC pin index, its LED index) in the probe's wiring (firmware/README.md)
WIRING = {"low": (1, 0), "band": (2, 1), "high": (3, 2)}
#: a tone in each channel's passband, for the notebook's color organ (Hz)
TONES = {"low": 150.0, "band": 2000.0, "high": 12000.0}
BIAS_TOL = 0.1          # a pin's silent mean within mid-rail +- 10% of full scale
REF_MIN_RMS = 8.0       # counts: below this A0 has no tone
REF_MAX_PEAK = 0.45     # of full scale: above this the reference is near clipping
ALIVE_GAIN = 0.2        # a channel's gain in its own passband, at least
LED_ON = 0.05           # fraction of samples lit that counts as "lit" (a sine is lit
LED_OFF = 0.02          # only near its peaks)


@dataclass
class Item:
    name: str
    passed: bool
    measured: str
    cause: str = ""
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        d = {"item": self.name, "pass": self.passed, "measured": self.measured}
        if not self.passed:
            d.update(cause=self.cause, fix=self.fix)
        return d


def _clipped(a: Any, top: int) -> bool:
    return a.min <= 3 or a.max >= top - 4


def run_check(probe: Any, output: Any, channels: tuple[str, ...], level_dbfs: float = -6.0,
              ms: int = 200) -> list[Item]:
    """Silence, 1 kHz, then a passband tone per channel; the judged items in order."""
    top = (1 << int(probe.info.get("adc_bits", 10))) - 1
    vpc = int(probe.info.get("vref_mv", 5000)) / 1000 / (top + 1)
    output.silence()
    quiet = probe.measure(ms)
    items = [_bias(i, a.mean, top, vpc) for i, a in enumerate(quiet.analog[:4])]
    output.tone(1000.0, level_dbfs)
    ref = probe.measure(ms)
    items.append(_reference(ref.analog[0], top))
    at: dict[str, Any] = {}
    for ch in channels:
        output.tone(TONES[ch], level_dbfs)
        at[ch] = probe.measure(max(ms, math.ceil(20_000 / TONES[ch])))
    output.silence()
    ref_ok = items[-1].passed
    for ch in channels:
        items += _channel(ch, channels, at, top, ref_ok)
    for ch in channels:
        items.append(_led(ch, quiet.led_fraction[WIRING[ch][1]], at[ch]))
    return items


def _bias(i: int, mean: float, top: int, vpc: float) -> Item:
    frac = mean / (top + 1)
    ok = abs(frac - 0.5) <= BIAS_TOL
    return Item(f"{PINS[i]} bias near mid-rail", ok, f"{mean * vpc:.2f} V ({100 * frac:.0f}%)",
                f"{PINS[i]} sits at {mean * vpc:.2f} V in silence, not ~{(top + 1) * vpc / 2:.1f} V"
                + (": the pin floats or is shorted to a rail" if not 0.05 < frac < 0.95 else
                   ": its bias divider is unequal or missing"),
                f"give {PINS[i]} two equal resistors (e.g. 100k) to 5 V and GND and couple "
                "the signal through a capacitor (firmware/README.md)")


def _reference(a: Any, top: int) -> Item:
    peak = a.rms * math.sqrt(2) / (top + 1)
    measured = f"{a.rms:.1f} counts rms at 1 kHz ({100 * peak:.0f}% of full scale peak)"
    if a.rms < REF_MIN_RMS:
        return Item("A0 reference present", False, measured,
                    "no tone reaches A0 (the filter input)",
                    "connect the sound card's output to the filters' input and to A0, check "
                    "the audio device (hostctl devices) and the volume")
    if _clipped(a, top) or peak > REF_MAX_PEAK:
        return Item("A0 reference in range", False, measured,
                    "the reference clips the ADC (too loud)",
                    "turn the sound card volume down, or use a lower level")
    return Item("A0 reference present and in range", True, measured)


def _gain(m: Any, pin: int) -> float:
    ref = m.analog[0].rms
    return m.analog[pin].rms / ref if ref > 0 else 0.0


def _channel(ch: str, channels: tuple[str, ...], at: dict[str, Any], top: int,
             ref_ok: bool) -> list[Item]:
    pin = WIRING[ch][0]
    gains = {t: _gain(at[t], pin) for t in channels}
    rms = at[ch].analog[pin].rms
    shown = ", ".join(f"{TONES[t]:g} Hz {g:.2f}" for t, g in gains.items())
    name = f"{PINS[pin]} ({ch}) alive and shaped like its filter"
    out = []
    if not ref_ok:
        out.append(Item(name, False, f"rms {rms:.1f} counts at {TONES[ch]:g} Hz",
                        "cannot be judged without the reference on A0",
                        "fix the reference first (see above)"))
    elif max(at[t].analog[pin].rms for t in channels) < 3.0:
        out.append(Item(name, False, f"rms {rms:.1f} counts at {TONES[ch]:g} Hz (and no "
                                     "more at the other tones)",
                        f"no signal on {PINS[pin]}: the {ch} output is not connected, or its "
                        "stage is dead",
                        f"check the wire from the {ch} filter's output to {PINS[pin]} (and "
                        "the op-amp's supply if the stage is buffered)"))
    else:
        best = max(gains, key=lambda t: gains[t])
        if best != ch or gains[ch] < ALIVE_GAIN:
            like = f" (it follows the {best} tone)" if best != ch else ""
            other = PINS[WIRING[best][0]] if best != ch else ""
            out.append(Item(name, False, f"gains {shown}",
                            f"{PINS[pin]} does not pass the {ch} band{like}: outputs swapped?",
                            f"{PINS[pin]} must carry the {ch} output"
                            + (f"; swap the wires on {PINS[pin]} and {other}" if other
                               else "; check that filter's parts")))
        else:
            out.append(Item(name, True, f"gains {shown}"))
    a = at[ch].analog[pin]
    if _clipped(a, top):
        out.append(Item(f"{PINS[pin]} ({ch}) not clipping", False,
                        f"min {a.min}, max {a.max} counts",
                        f"{PINS[pin]} hits the ADC rails at {TONES[ch]:g} Hz",
                        "turn the volume down or lower the level; check the bias on that pin"))
    return out


def _led(ch: str, silent: float, m: Any) -> Item:
    i = WIRING[ch][1]
    lit = m.led_fraction[i]
    measured = f"{100 * silent:.0f}% lit in silence, {100 * lit:.0f}% at {TONES[ch]:g} Hz"
    name = f"{LED_PINS[i]} ({ch} LED) toggles"
    if silent > LED_OFF:
        return Item(name, False, measured, f"{LED_PINS[i]} is HIGH in silence",
                    f"check {LED_PINS[i]}'s wiring: it should sense the {ch} LED's drive, "
                    "low when the LED is off (a pull-down, not a short to 5 V)")
    if lit < LED_ON:
        return Item(name, False, measured,
                    f"{LED_PINS[i]} never goes HIGH with a tone in the {ch} band",
                    f"check the {ch} LED's wiring to {LED_PINS[i]} (and the LED's polarity); "
                    "a higher level helps if the LED's threshold is above the signal")
    return Item(name, True, measured)


def format_items(items: list[Item], cols: int) -> list[str]:
    """One line per item, each FAIL followed by its cause and fix, wrapped to ``cols``."""
    import textwrap

    def wrap(text: str) -> list[str]:
        return textwrap.wrap(text, cols, subsequent_indent=" " * 6, break_on_hyphens=False)

    out = []
    for it in items:
        out += wrap(f"{'PASS' if it.passed else 'FAIL'}  {it.name}: {it.measured}")
        if not it.passed:
            out += wrap(f"      cause: {it.cause}") + wrap(f"      fix: {it.fix}")
    return out
