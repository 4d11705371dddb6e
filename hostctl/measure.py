"""Turn one probe reading at one tone into Measurements, with sanity checks.

Gains are AC RMS ratios against the reference channel A0, with the channel's silent
noise floor removed in quadrature (a quantised ADC reads ~0.3 LSB RMS of a flat input,
which would otherwise bias small gains upward). A row that fails a check keeps its numbers
but carries a ``flag`` and is never fitted.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from hostctl.measurements import Measurement

CHANNELS = ("low", "band", "high")     # A1, A2, A3 and D2, D3, D4
CLIP_MARGIN = 3                        # counts from either rail
MIN_REF_RMS = 8.0                      # counts: below this the tone did not arrive
MIN_SIGNAL_SNR = 4.0                   # signal RMS over noise floor for a usable gain


@dataclass
class Floor:
    """Per-channel noise floor and offset measured in silence (pre-flight)."""

    rms: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0)
    mean: tuple[float, ...] = (512.0, 512.0, 512.0, 512.0)
    led_lit: tuple[float, ...] = (0.0, 0.0, 0.0)


@dataclass
class Reading:
    """What one tone gave, before it is split into per-channel rows."""

    frequency_hz: float
    level_dbfs: float
    time_s: float
    rows: list[Measurement] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    ref_rms: float = 0.0
    clipped: bool = False


def to_volts(counts: float, info: dict[str, str]) -> float:
    vref = float(info.get("vref_mv", 5000)) / 1000.0
    bits = int(info.get("adc_bits", 10))
    return counts * vref / (1 << bits)


def readings_from(result, freq: float, level_dbfs: float, time_s: float, floor: Floor,
                  info: dict[str, str], channels: Sequence[str] = CHANNELS) -> Reading:
    """Measurements for each channel of ``channels`` from a MeasureResult."""
    ref = result.analog[0]
    top = (1 << int(info.get("adc_bits", 10))) - 1
    rd = Reading(freq, level_dbfs, time_s, ref_rms=ref.rms)
    ref_flags = []
    if ref.rms < MIN_REF_RMS:
        ref_flags.append("no-reference")
        rd.problems.append(f"reference A0 RMS {ref.rms:.1f} counts: the tone did not arrive")
    if ref.min <= CLIP_MARGIN or ref.max >= top - CLIP_MARGIN:
        ref_flags.append("ref-clipping")
        rd.clipped = True
        rd.problems.append("reference A0 clips the ADC: lower the level")
    ref_sig = math.sqrt(max(ref.rms ** 2 - floor.rms[0] ** 2, 0.0))
    vin = to_volts(ref_sig * math.sqrt(2), info)
    fractions = result.led_fraction
    for i, ch in enumerate(CHANNELS):
        if ch not in channels:
            continue
        a = result.analog[i + 1]
        flags = list(ref_flags)
        if a.min <= 0 or a.max >= top:
            flags.append("adc-rail")
            rd.problems.append(f"{ch}: ADC at a rail (min {a.min}, max {a.max})")
        sig2 = a.rms ** 2 - floor.rms[i + 1] ** 2
        sig = math.sqrt(max(sig2, 0.0))
        gain = sig / ref_sig if ref_sig > 0 else None
        if gain is not None and sig < MIN_SIGNAL_SNR * max(floor.rms[i + 1], 0.25):
            flags.append("below-floor")
        frac = fractions[i]
        led = 1 if frac > 0.0 else 0
        flag = "|".join(flags)
        # an LED lit with no signal on its channel is not a reading to trust (below the
        # noise floor least of all: its LED state would otherwise still be fitted)
        if led and gain is not None and gain < 0.05:
            rd.problems.append(f"{ch}: LED lit at gain {gain:.3f}")
            flag = (flag + "|led-inconsistent").strip("|")
        rd.rows.append(Measurement(
            frequency_hz=freq, channel=ch,
            gain=gain if gain is not None else None,
            led=led, vin_v=vin if vin > 0 else None,
            vout_v=to_volts(sig * math.sqrt(2), info) if gain is not None else None,
            level_dbfs=level_dbfs, led_fraction=frac, time_s=round(time_s, 6), flag=flag))
    return rd
