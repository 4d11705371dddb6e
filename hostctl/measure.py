"""Turn one probe reading at one tone into Measurements, with sanity checks.

Gains are ratios of signal amplitudes against the reference channel A0. Each amplitude is
the sine that, quantised with the channel's analog noise, gives the window's mean and RMS
(hostctl.noise): the noise is solved from the silent floor, not the floor subtracted, since
a tone's quantisation differs from a flat input's (that biased small gains by up to -0.7 %
with a noisy ADC, +1.6 % with a noiseless one). Each gain carries its standard error from the
same numbers. A row that fails a check keeps its numbers but carries a ``flag`` and is never
fitted.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hostctl import noise
from hostctl.circuits.directives import COLOR_ORGAN_WIRING
from hostctl.dataset import Measurement

#: the color organ's channels (A1..A3, D2..D4) for callers without a circuit; a run reads
#: its circuit's own (hostctl.circuits.directives.probe_inputs)
CHANNELS = tuple(COLOR_ORGAN_WIRING)
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


def silent_floor(result, info: dict[str, str]) -> tuple[Floor, list[str]]:
    """The noise floor a silent window gives, and what it says about the wiring."""
    means = [a.mean for a in result.analog]
    top = 1 << int(info.get("adc_bits", 10))
    problems = [f"A{i} sits at {m:.0f} counts in silence: is it biased to mid-rail?"
                for i, m in enumerate(means) if not 0.3 * top < m < 0.7 * top]
    problems += [f"LED input D{i + 2} is HIGH in silence: check its wiring"
                 for i, frac in enumerate(result.led_fraction) if frac > 0.5]
    return Floor(rms=tuple(a.rms for a in result.analog), mean=tuple(means),
                 led_lit=tuple(result.led_fraction)), problems


def reference_ok(ref, info: dict[str, str]) -> bool:
    """The reference carries a tone and does not clip (readings_from's flags)."""
    top = (1 << int(info.get("adc_bits", 10))) - 1
    return ref.rms >= MIN_REF_RMS and not (ref.min <= CLIP_MARGIN
                                           or ref.max >= top - CLIP_MARGIN)


def floor_sigma(floor: Floor) -> list[float]:
    """Each input's analog noise, solved from its silent mean and RMS (cached: a run solves
    it once, at its pre-flight, not while a queued tone waits to be read)."""
    return [noise.silence_sigma(round(m, 3), round(r, 3))
            for m, r in zip(floor.mean, floor.rms, strict=True)]


def readings_from(result, freq: float, level_dbfs: float, time_s: float, floor: Floor,
                  info: dict[str, str],
                  channels: Mapping[str, int] | Sequence[str] = CHANNELS) -> Reading:
    """Measurements for each channel of ``channels`` from a MeasureResult: channel -> the
    probe input that reads it (1..3), or names read as the color organ is wired."""
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
    sigma = floor_sigma(floor)
    ref_pow = noise.signal_power(ref.mean, ref.rms, sigma[0])
    ref_sig = math.sqrt(ref_pow)
    vin = to_volts(ref_sig * math.sqrt(2), info)
    cover = noise.phase_cover_var(freq, result.rate_hz, ref.n)
    fractions = result.led_fraction
    inputs = (channels if isinstance(channels, Mapping) else
              {ch: k for ch, k in COLOR_ORGAN_WIRING.items() if ch in channels})
    for ch, k in inputs.items():
        i = k - 1              # analog k, its LED the (k-1)-th digital input
        a = result.analog[i + 1]
        flags = list(ref_flags)
        if a.min <= 0 or a.max >= top:
            flags.append("adc-rail")
            rd.problems.append(f"{ch}: ADC at a rail (min {a.min}, max {a.max})")
        out_pow = noise.signal_power(a.mean, a.rms, sigma[i + 1])
        sig = math.sqrt(out_pow)
        gain = sig / ref_sig if ref_sig > 0 else None
        se = noise.gain_se(out_pow, ref_pow, noise.noise_power(sigma[i + 1]),
                           noise.noise_power(sigma[0]), a.n, cover) if gain is not None else None
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
            level_dbfs=level_dbfs, led_fraction=frac, time_s=round(time_s, 6), flag=flag,
            gain_se=se))
    return rd
