"""What the LEDs see: the volts at each filter output, with the source in the circuit.

An LED lights when the voltage at its filter's output crosses its switching level. That
voltage is the source's open-circuit amplitude times ``|V(LED node) / V(source)|`` from the
netlist with the sound card's source resistance in it: the filters' common input sags as
their input impedance falls (three filters on one output), so a gain |H| against a fixed
threshold misplaces every switch. :class:`LedDrive` carries what that takes (each LED's
volts, the amplitude, the source resistance) and where each number came from;
:func:`why_dark` names the reason an LED misses its band and the one change that fixes it.

numpy only (``Circuit``'s numpy solver): ``hostctl design`` uses this and must start fast.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hostctl.circuits import Circuit
    from hostctl.target import Target

#: the netlist parameter that is the sound card's output resistance (hostctl.source)
SOURCE_PARAM = "R_source"
#: the largest source resistance (ohm) the estimate searches: a line output is well under it
R_SOURCE_MAX = 2000.0
#: what ``design`` assumes when it is not told (a laptop's headphone output at -6 dBFS)
ASSUMED_SOURCE_OHM = 10.0
ASSUMED_FULL_SCALE_V = 1.0
#: frequencies the verdicts look at (the sound card's range)
GRID = np.geomspace(20.0, 20000.0, 801)
#: scale factors tried for "resistors up by k, capacitors down by k"
SCALES = (2, 3, 5, 10, 20, 50, 100)


@dataclass(frozen=True)
class LedDrive:
    """The LEDs judged on volts: lit iff amplitude * |V(node)/V(source)| > its volts."""

    volts: float | Mapping[str, float]   # each LED's switching voltage (peak at its node)
    amplitude_v: float                   # the source's open-circuit peak volts at the level
    r_source: float                      # ohm
    level_dbfs: float
    how: str                             # where amplitude and R_s come from, in words
    #: dB the level may still rise (to 0 dBFS)
    headroom_db: float = 0.0
    #: the source estimate the amplitude and resistance come from (hostctl.source)
    estimate: Mapping[str, Any] | None = None

    def vth(self, channel: str) -> float:
        v = self.volts
        return float(v[channel]) if isinstance(v, Mapping) else float(v)

    def louder(self, db: float) -> LedDrive:
        return replace(self, amplitude_v=self.amplitude_v * 10 ** (db / 20),
                       level_dbfs=self.level_dbfs + db, headroom_db=self.headroom_db - db)

    def describe(self) -> str:
        vf = (", ".join(f"{k} {float(v):g}" for k, v in self.volts.items())
              if isinstance(self.volts, Mapping) else f"{float(self.volts):g}")
        return (f"LEDs judged on the volts at their filter outputs: switch at {vf} V; source "
                f"{self.amplitude_v:.3g} V peak at {self.level_dbfs:g} dBFS through "
                f"{self.r_source:.3g} ohm ({self.how})")

    def to_json(self) -> dict[str, Any]:
        return {"led_vf": (dict(self.volts) if isinstance(self.volts, Mapping)
                           else float(self.volts)),
                "amplitude_v": self.amplitude_v, "r_source_ohm": self.r_source,
                "level_dbfs": self.level_dbfs, "headroom_db": self.headroom_db,
                "source": self.how, "estimate": self.estimate}


def led_volts(circ: Circuit, f: Any, values: Mapping[str, float], caps: Any,
              drive: LedDrive) -> dict[str, np.ndarray]:
    """Peak volts at each LED's node (channel -> array over ``f``)."""
    from hostctl.circuits import capacitances
    from hostctl.circuits.registry import _overrides

    f = np.atleast_1d(np.asarray(f, dtype=np.float64))
    if circ.netlist is None or not circ.leds:   # no netlist: the gain is all we have
        mag = circ.magnitude(f, values, caps)
        return {ch: drive.amplitude_v * np.asarray(v) for ch, v in mag.items()}
    vals = {k: v for k, v in values.items()
            if k in circ.resistors or circ.netlist.param(k) is not None}
    if circ.netlist.param(SOURCE_PARAM) is not None:
        vals[SOURCE_PARAM] = max(float(drive.r_source), 1e-3)   # 0 ohm: a short
    over = _overrides(circ, vals, capacitances(circ, caps))
    chans = [c for c in circ.channels if c in circ.leds]
    V = np.abs(circ.solver.solve_numpy(2 * math.pi * f, over, [circ.leds[c] for c in chans]))
    return {c: drive.amplitude_v * V[..., i] for i, c in enumerate(chans)}


def has_source(circ: Circuit) -> bool:
    """Does the circuit model the sound card's source resistance?"""
    return circ.netlist is not None and circ.netlist.param(SOURCE_PARAM) is not None


def _band_ok(v: np.ndarray, vth: float, d: Mapping[str, list[tuple[float, float]]]) -> bool:
    for kind, bands in d.items():
        for lo, hi in bands:
            m = (GRID >= lo) & (GRID <= hi)
            lit = v[m] > vth
            if (kind == "on" and not lit.all()) or (kind == "off" and lit.any()):
                return False
    return True


def _passes(circ: Circuit, values: Mapping[str, float], caps: Any, drive: LedDrive,
            target: Target, channel: str, only: str | None = None) -> bool:
    """The LED meets its target bands (``only="on"``: it is lit all over its on-bands)."""
    v = led_volts(circ, GRID, values, caps, drive)[channel]
    bands = target.bands[channel]
    if only is not None:
        bands = {only: bands.get(only, [])}
    return _band_ok(v, drive.vth(channel), bands)


def _fix(text: str, circ: Circuit, values: Mapping[str, float], caps: Any, drive: LedDrive,
         target: Target, channel: str) -> str | None:
    """``text`` if the change makes the LED reach its on-bands; it says when the parts must
    then be chosen again (the switch points move with the drive)."""
    if not _passes(circ, values, caps, drive, target, channel, only="on"):
        return None
    if _passes(circ, values, caps, drive, target, channel):
        return text
    return text + ", then choose the parts again for it"


def buffered_of(circ: Circuit) -> Circuit | None:
    """The same family's circuit with the band-pass buffered (None: already buffered)."""
    from hostctl.circuits import CIRCUITS

    for suffix in ("-passive", "-unbuffered"):
        if suffix in circ.name:
            other = CIRCUITS.get(circ.name.replace(suffix, ""))
            if other is not None and other.leds:
                return other
    return None


def why_dark(circ: Circuit, values: Mapping[str, float], caps: Any, drive: LedDrive,
             target: Target, channel: str) -> dict[str, str]:
    """Why ``channel``'s LED misses its target bands, and the one change that fixes it."""
    vth = drive.vth(channel)
    d = target.bands[channel]
    v = led_volts(circ, GRID, values, caps, drive)[channel]
    on = np.zeros(GRID.shape, bool)
    for lo, hi in d.get("on", []):
        on |= (GRID >= lo) & (GRID <= hi)
    lit = v > vth
    if on.any() and not lit[on].all():
        return _dark_in_band(circ, values, caps, drive, target, channel, v, on)
    for lo, hi in d.get("off", []):
        m = (GRID >= lo) & (GRID <= hi) & lit
        if m.any():
            i = int(np.flatnonzero(m)[np.argmax(v[m])])
            need = 20 * math.log10(v[i] / vth) + 0.5
            return {"why": f"lit at {GRID[i]:.0f} Hz inside its off band {lo:g}-{hi:g} Hz "
                           f"({v[i]:.3g} V > {vth:g} V)",
                    "fix": f"lower the level by {need:.1f} dB" if _passes(
                        circ, values, caps, drive.louder(-need), target, channel)
                    else "parts whose edge sits in the gap (see the target's bands)"}
    return {"why": "misses its bands", "fix": ""}


def _dark_in_band(circ: Circuit, values: Mapping[str, float], caps: Any, drive: LedDrive,
                  target: Target, channel: str, v: np.ndarray, on: np.ndarray
                  ) -> dict[str, str]:
    vth = drive.vth(channel)
    i = int(np.flatnonzero(on)[np.argmin(v[on])])
    j = int(np.argmax(v))
    short = 20 * math.log10(vth / max(v[i], 1e-300))   # dB the weakest on-band tone lacks
    sag = has_source(circ) and drive.r_source > 0.5
    stiff = replace(drive, r_source=0.0)
    v0 = led_volts(circ, GRID[[i]], values, caps, stiff)[channel][0] if sag else v[i]
    if v.max() <= vth:
        why = f"never reaches its {vth:g} V: peaks at {v[j]:.3g} V ({GRID[j]:.0f} Hz)"
    else:
        why = f"dark at {GRID[i]:.0f} Hz in its on band ({v[i]:.3g} V < {vth:g} V)"
    buf = buffered_of(circ) if channel == "band" else None
    if buf is not None and v0 < vth:
        why += "; the passive band-pass loses too much"
    elif sag and v0 > vth:
        why += (f"; the sound card's {drive.r_source:.3g} ohm sags the input to "
                f"{v[i] / v0:.2f} there")
    fixes: list[str | None] = []
    if buf is not None:
        vb = led_volts(buf, GRID, values, caps, drive)[channel].max()
        fixes.append(_fix(f"buffer the band-pass (a follower between its sections: peak "
                          f"{vb:.3g} V)", buf, values, caps, drive, target, channel))
    need = short + 0.5
    if need <= drive.headroom_db:
        fixes.append(_fix(f"raise the level by {need:.1f} dB (to "
                          f"{drive.level_dbfs + need:.1f} dBFS)", circ, values, caps,
                          drive.louder(need), target, channel))
    if sag:
        for k in SCALES:
            f = _fix(f"scale all resistors up by {k} with capacitors down by {k} (same "
                     f"corners, {k}x less load on the source)", circ, _scaled(circ, values, k),
                     _scaled_caps(circ, caps, 1 / k), drive, target, channel)
            if f is not None:
                fixes.append(f)
                break
        r = _source_needed(circ, values, caps, drive, target, channel)
        if r is not None:
            fixes.append(_fix(f"lower the source impedance to {r:.2g} ohm or less (now "
                              f"{drive.r_source:.3g} ohm)", circ, values, caps,
                              replace(drive, r_source=r), target, channel))
    fixes = [f for f in fixes if f]
    if not fixes:
        fixes.append(f"{short:.1f} dB more drive than this source gives at "
                     f"{drive.level_dbfs:g} dBFS: a louder source, or LEDs that switch lower")
    return {"why": why, "fix": str(fixes[0])}


def _scaled(circ: Circuit, values: Mapping[str, float], k: float) -> dict[str, float]:
    return {n: (float(x) * k if n in circ.resistors else float(x)) for n, x in values.items()}


def _scaled_caps(circ: Circuit, caps: Any, k: float) -> dict[str, float]:
    from hostctl.circuits import capacitances

    return {r: c * k for r, c in capacitances(circ, caps).items()}


def _source_needed(circ: Circuit, values: Mapping[str, float], caps: Any, drive: LedDrive,
                   target: Target, channel: str) -> float | None:
    """The largest source resistance (to 2 digits) at which the LED is lit all over its
    on-bands."""
    def ok(r: float) -> bool:
        return _passes(circ, values, caps, replace(drive, r_source=r), target, channel,
                       only="on")

    if not ok(0.0):
        return None
    lo, hi = 0.0, drive.r_source
    for _ in range(30):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if ok(mid) else (lo, mid)
        if hi - lo < 0.01 * max(hi, 0.1):
            break
    return lo
