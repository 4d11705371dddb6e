"""What the build should do: corner frequencies, and LED on/off bands per channel.

A target TOML looks like::

    [corners]          # Hz; a band-pass channel takes [lower_edge, upper_edge]
    low = 800
    band = [1000, 4000]
    high = 5000

    [bands.low]        # optional LED bands (Hz) used for pass/fail
    on = [[20, 700]]
    off = [[900, 20000]]

Without a file the notebook's color organ is the target.
"""

from __future__ import annotations

import hashlib
import math
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from hostctl.errors import InputError
from hostctl.files import read_regular

if TYPE_CHECKING:
    from hostctl.circuits import Circuit

Band = tuple[float, float]
DEFAULT_SOURCE = "notebook default"


@dataclass
class Target:
    corners: dict[str, tuple[float, ...]]
    bands: dict[str, dict[str, list[Band]]] = field(default_factory=dict)
    source: str = DEFAULT_SOURCE
    #: the file read (absolute) and its SHA-256, so a resume can tell it changed
    path: str | None = None
    sha256: str = ""

    def corner_for(self, circ: Circuit, resistor: str) -> float:
        """The target corner of the section ``resistor`` sets."""
        channel, kind = (circ.sections or {})[resistor]
        if channel not in self.corners:
            raise InputError(f"target ({self.source}) has no corner for channel '{channel}'")
        cs = self.corners[channel]
        kinds = [k for (ch, k) in (circ.sections or {}).values() if ch == channel]
        if len(kinds) == 1:
            if len(cs) != 1:
                raise InputError(f"target ({self.source}): channel '{channel}' takes one corner")
            return cs[0]
        if len(cs) != 2:
            raise InputError(f"target ({self.source}): channel '{channel}' takes "
                             "[lower_edge, upper_edge]")
        # the high-pass section sets the lower edge, the low-pass section the upper edge
        return cs[0] if kind == "high" else cs[1]

    def check(self, circ: Circuit, reach: Band | None = None) -> None:
        """Before anything is measured: every channel named is one of ``circ``'s, each
        section has its corner, and (with ``reach``, the tones' range) every corner can be
        measured."""
        known = ", ".join(circ.channels)
        for what, names in (("corners", self.corners), ("bands", self.bands)):
            for ch in names:
                if ch not in circ.channels and self.source != DEFAULT_SOURCE:
                    raise InputError(f"target ({self.source}): {what}.{ch}: '{ch}' is not a "
                                     f"channel of {circ.name} (known: {known})")
        for r in circ.resistors:
            if r in (circ.sections or {}):
                f = self.corner_for(circ, r)
                if reach is not None and not reach[0] <= f <= reach[1]:
                    raise InputError(
                        f"target ({self.source}): corner {f:g} Hz of {r} is outside the "
                        f"{reach[0]:g}..{reach[1]:g} Hz the test tones can reach")

    def meta(self) -> dict[str, str]:
        """Session header lines that let a resume re-read this very target."""
        if self.path is None:
            return {"target": self.source}
        return {"target": self.source, "target_path": self.path, "target_sha256": self.sha256}

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source,
                "corners_hz": {k: list(v) for k, v in self.corners.items()},
                "bands_hz": {ch: {k: [list(b) for b in bs] for k, bs in d.items()}
                             for ch, d in self.bands.items()}}


def default_target() -> Target:
    """The notebook's color organ: 800 Hz; 1-4 kHz; 5 kHz, LED bands with ~12% margins."""
    return Target(
        corners={"low": (800.0,), "band": (1000.0, 4000.0), "high": (5000.0,)},
        bands={
            "low": {"on": [(20.0, 700.0)], "off": [(920.0, 20000.0)]},
            "band": {"on": [(1250.0, 3200.0)], "off": [(20.0, 900.0), (4500.0, 20000.0)]},
            "high": {"on": [(5700.0, 20000.0)], "off": [(20.0, 4400.0)]},
        },
        source=DEFAULT_SOURCE)


#: Frequencies a target may name (Hz): an audio-band RC filter; outside is a unit mistake.
HZ_RANGE = (1.0, 100_000.0)


def _pos(v: Any, where: str) -> float:
    if isinstance(v, bool) or not isinstance(v, int | float):
        raise InputError(f"{where} must be a number of Hz, got {v!r}")
    v = float(v)
    lo, hi = HZ_RANGE
    if not math.isfinite(v):
        raise InputError(f"{where} must be a finite frequency, got {v}")
    if v <= 0:
        raise InputError(f"{where} must be a positive frequency ({lo:g} Hz..{hi / 1000:g} kHz), "
                         f"got {v:g}")
    if not lo <= v <= hi:
        raise InputError(f"{where} must be a frequency in {lo:g} Hz..{hi / 1000:g} kHz, "
                         f"got {v:g}")
    return v


def _bands(v: Any, where: str) -> list[Band]:
    if not isinstance(v, list) or not v:
        raise InputError(f"{where} must be a list of [low, high] pairs")
    out = []
    for i, b in enumerate(v):
        if not (isinstance(b, list) and len(b) == 2):
            raise InputError(f"{where}[{i}] must be a [low, high] pair")
        lo, hi = _pos(b[0], f"{where}[{i}][0]"), _pos(b[1], f"{where}[{i}][1]")
        if lo >= hi:
            raise InputError(f"{where}[{i}]: low {lo} must be below high {hi}")
        out.append((lo, hi))
    return out


def parse_target(doc: Mapping[str, Any], source: str) -> Target:
    corners: dict[str, tuple[float, ...]] = {}
    unknown = set(doc) - {"corners", "bands"}
    if unknown:
        raise InputError(f"{source}: unknown table(s) {', '.join(sorted(unknown))} "
                         "(expected [corners] and [bands.CHANNEL])")
    if "corners" not in doc and "bands" not in doc:
        raise InputError(f"{source}: needs a [corners] table or [bands.CHANNEL] tables")
    raw_corners = doc.get("corners", {})
    if not isinstance(raw_corners, dict):
        raise InputError(f"{source}: corners must be a table: [corners] CHANNEL = Hz")
    for ch, v in raw_corners.items():
        where = f"{source}: corners.{ch}"
        if isinstance(v, list):
            if len(v) != 2:
                raise InputError(f"{where} must be one number or [lower_edge, upper_edge]")
            lo, hi = _pos(v[0], where + "[0]"), _pos(v[1], where + "[1]")
            if lo >= hi:
                raise InputError(f"{where}: lower edge {lo} must be below upper edge {hi}")
            corners[ch] = (lo, hi)
        else:
            corners[ch] = (_pos(v, where),)
    bands: dict[str, dict[str, list[Band]]] = {}
    raw_bands = doc.get("bands", {})
    if not isinstance(raw_bands, dict):
        raise InputError(f"{source}: bands must be tables [bands.CHANNEL]")
    for ch, d in raw_bands.items():
        if not isinstance(d, dict) or not (set(d) <= {"on", "off"}) or not d:
            raise InputError(f"{source}: bands.{ch} takes 'on' and/or 'off' lists")
        bands[ch] = {k: _bands(v, f"{source}: bands.{ch}.{k}") for k, v in d.items()}
    if not corners:
        corners = _corners_from_bands(bands, source)
    return Target(corners, bands, source)


def _corners_from_bands(bands: dict[str, dict[str, list[Band]]], source: str
                        ) -> dict[str, tuple[float, ...]]:
    """Corners at the geometric middle of each on/off boundary gap."""
    out: dict[str, tuple[float, ...]] = {}
    for ch, d in bands.items():
        on = d.get("on")
        if not on:
            raise InputError(f"{source}: bands.{ch} needs an 'on' band to derive a corner")
        lo, hi = on[0]
        offs = d.get("off", [])
        below = [b for b in offs if b[1] <= lo]
        above = [b for b in offs if b[0] >= hi]
        edges = []
        if below:
            edges.append(math.sqrt(max(b[1] for b in below) * lo))
        if above:
            edges.append(math.sqrt(min(b[0] for b in above) * hi))
        if not edges:
            raise InputError(f"{source}: bands.{ch} needs an 'off' band next to its 'on' band")
        out[ch] = tuple(edges)
    return out


def load_target(path: str | None) -> Target:
    if path is None:
        return default_target()
    raw = read_regular(path, "target TOML file")
    digest = hashlib.sha256(raw).hexdigest()
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise InputError("target is not UTF-8 text", path) from None
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"not valid TOML: {e}", path) from None
    tgt = parse_target(doc, str(path))
    tgt.path, tgt.sha256 = os.path.abspath(path), digest
    return tgt
