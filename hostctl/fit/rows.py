"""The usable rows of a MeasurementSet as validated columns: the data side of a fit.

A compact store (hostctl.rowstore) hands over its columns without a row object; a list of
rows is gathered once. Many gain rows also get their frequency grid (hostctl.fit.gaingrid).
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from hostctl.circuits import Circuit
from hostctl.dataset import MeasurementSet
from hostctl.errors import FitError, InputError
from hostctl.fit.gaingrid import gain_grid


def _usable(m: Any, what: str) -> bool:
    """Row usable for a gain / an LED fit (flag rules live in measurements.py)."""
    attr = getattr(m, f"{what}_usable", None)
    if attr is not None:
        return bool(attr)
    return getattr(m, what) is not None and not m.flag


def _rowerror(msg: str, row: int, column: str) -> InputError:
    e = InputError(f"row {row + 1}: {msg}")
    e.row, e.column_name, e.bare = row, column, msg  # type: ignore[attr-defined]
    return e


@dataclass
class _Rows:
    """The usable rows as columns: gain rows (g*) and LED rows (l*), validated."""

    fg: np.ndarray
    cg: np.ndarray             # int16 channel indices (a 2-million-row file: 4 MB)
    logg: np.ndarray
    sg: np.ndarray | None
    fl: np.ndarray
    cl: np.ndarray
    yl: np.ndarray
    level: np.ndarray          # level_dbfs of LED rows (nan where absent)
    vin: np.ndarray            # reference amplitude of LED rows (nan where absent)
    lmask: np.ndarray          # which data rows are the LED rows (for row numbers)
    warnings: list[str]
    grid: Any = None           # the gain rows on a frequency grid (many rows), or None


def _first_bad(mask: np.ndarray, msg: Any, column: str) -> None:
    if mask.any():      # (cheaper than flatnonzero on every board of fit_many)
        i = int(np.argmax(mask))
        raise _rowerror(msg(i), i, column)


def _raw(data: MeasurementSet) -> dict[str, Any]:
    """Every row's fields as arrays: frequency, channel index with its names, gain, LED
    (-1 empty), level, gain_se, vin (NaN empty) and the gain/LED usability by flag (None
    when no row is flagged). A compact store gives zero-copy columns: no row object."""
    rows = data.rows
    cols = getattr(rows, "columns", None)
    if cols is not None:
        return _raw_columns(cols())
    n = len(rows)
    try:    # one comprehension a field: faster than one tuple a row
        se = [m.gain_se for m in rows]
    except AttributeError:      # a row type without gain_se (duck-typed rows)
        se = [None] * n
    CH = [m.channel for m in rows]
    names = sorted(set(CH))
    nix = {c: i for i, c in enumerate(names)}
    out: dict[str, Any] = {
        "F": np.array([m.frequency_hz for m in rows], dtype=float),
        "G": _floats([m.gain for m in rows], n), "LV": _floats([m.level_dbfs for m in rows], n),
        "Y": _states([m.led for m in rows], n), "se": _floats(se, n),
        "vin": _floats([m.vin_v for m in rows], n),
        "chn": np.fromiter(map(nix.__getitem__, CH), np.int64, n), "names": names,
        "gflag": None, "lflag": None}
    if any([m.flag for m in rows]):
        out["gflag"] = np.array([_usable(m, "gain") for m in rows])
        out["lflag"] = np.array([_usable(m, "led") for m in rows])
    return out


def _states(vals: list, n: int) -> np.ndarray:
    """The LED column: int64 states, -1 empty; as floats when a state is no integer (to
    report it). A column of integers alone (LED-only data) is converted once."""
    y = np.array(vals) if n else np.zeros(0, np.int64)
    if y.dtype.kind == "i":
        return y.astype(np.int64, copy=False)
    y = _floats(vals, n)
    y[np.isnan(y)] = -1                 # None -> NaN -> -1 (empty)
    yi = y.astype(np.int64)
    return yi if np.array_equal(yi, y) else y


def _floats(vals: list, n: int) -> np.ndarray:
    """A field of every row as floats, None as NaN (a column nobody filled: no conversion
    of each None)."""
    if vals.count(None) == n:
        return np.full(n, math.nan)
    return np.array(vals, dtype=float)


def _raw_columns(c: dict[str, Any]) -> dict[str, Any]:
    """:func:`_raw` from a compact store's columns; flags judged once per distinct flag."""
    from hostctl.dataset import Measurement

    n = len(c["channel"])

    def col(name: str) -> np.ndarray:   # an absent column: one NaN, broadcast (no memory)
        a = c.get(name)
        return np.broadcast_to(np.float64(math.nan), (n,)) if a is None else a

    led = c.get("led")
    out: dict[str, Any] = {
        "F": col("frequency_hz"), "G": col("gain"), "LV": col("level_dbfs"),
        "Y": np.broadcast_to(np.int8(-1), (n,)) if led is None else led, "se": col("gain_se"),
        "vin": col("vin_v"), "chn": c["channel"], "names": c["channel_names"],
        "gflag": None, "lflag": None}
    fnames = c["flag_names"]
    if any(fnames):
        probe = [Measurement(1.0, "x", gain=1.0, led=1, flag=f) for f in fnames]
        # the flag judged once per distinct flag; a row also needs its value (the probe
        # has one: an empty gain cell of an unflagged row is no gain row)
        out["gflag"] = np.array([m.gain_usable for m in probe])[c["flag"]] & ~np.isnan(out["G"])
        out["lflag"] = np.array([m.led_usable for m in probe])[c["flag"]] & (out["Y"] >= 0)
    return out


def row_kinds(data: MeasurementSet) -> tuple[bool, bool]:
    """(any usable gain row, any usable LED row): from the columns when the rows are
    held as columns (iterating them would build a Measurement a row)."""
    rows = data.rows
    if hasattr(rows, "columns"):
        raw = _raw(data)
        g = ~np.isnan(raw["G"]) if raw["gflag"] is None else raw["gflag"]
        led = raw["Y"] >= 0 if raw["lflag"] is None else raw["lflag"]
        return bool(g.any()), bool(led.any())
    return (any(_usable(m, "gain") for m in rows),
            any(m.led is not None and _usable(m, "led") for m in rows))


#: the last data's columns: a preset family fits the same rows once per member
_LAST: list[Any] = []


def _columns(data: MeasurementSet, circ: Circuit, est: bool, use_gain: bool,
             use_led: bool) -> _Rows:
    """:func:`_read_columns`, reused while the same read-only rows are fitted again (a
    family's members, the electrolytic re-fit): a big file is sifted once."""
    rows = data.rows
    if not hasattr(rows, "columns"):    # a list can change between fits
        return _read_columns(data, circ, est, use_gain, use_led)
    key = (tuple(circ.channels), est, use_gain, use_led)
    if _LAST and _LAST[0]() is rows and _LAST[1] == key:
        got = _LAST[2]
    else:
        _LAST.clear()
        got = _read_columns(data, circ, est, use_gain, use_led)
        _LAST.extend([weakref.ref(rows), key, got])
    return replace(got, warnings=list(got.warnings))


def _read_columns(data: MeasurementSet, circ: Circuit, est: bool, use_gain: bool,
                  use_led: bool) -> _Rows:
    """The usable rows as validated columns (the only pass over the data; none at all
    when the data are already columns)."""
    chidx = {c: i for i, c in enumerate(circ.channels)}
    if not len(data.rows):
        raise FitError("no usable rows: the data set is empty")
    raw = _raw(data)
    F, G, Y, LV, se, vin = (raw[k] for k in ("F", "G", "Y", "LV", "se", "vin"))
    names = raw["names"]
    if raw["gflag"] is not None:
        gmask, lmask = raw["gflag"], raw["lflag"]
    else:
        gmask, lmask = ~np.isnan(G), Y >= 0
    gmask &= use_gain
    lmask &= use_led
    used = gmask | lmask
    chi = np.array([chidx.get(c, -1) for c in names], dtype=np.int16)[raw["chn"]]
    _first_bad(used & (chi < 0), lambda i: f"channel '{names[raw['chn'][i]]}' is not an "
               f"output of circuit {circ.name} ({', '.join(circ.channels)})", "channel")
    _first_bad(used & ~(np.isfinite(F) & (F > 0)),
               lambda i: f"frequency {F[i]} must be a positive number", "frequency_hz")
    _first_bad(gmask & ~np.isfinite(G), lambda i: f"gain {G[i]} is not finite", "gain")
    has_led = bool(lmask.any())
    if has_led:
        _first_bad(lmask & (Y != 0) & (Y != 1),
                   lambda i: f"LED state must be 0 or 1, got {Y[i]}", "led")
    if est and has_led:
        _first_bad(lmask & np.isnan(LV), lambda i: "estimating the LED threshold needs "
                   "level_dbfs on every LED row", "level_dbfs")
    zero = gmask & (G <= 0)
    warn = []
    if zero.any():
        warn.append(f"dropped {int(zero.sum())} gain value(s) <= 0 (no log); they carry no "
                    "usable information for a log-error fit")
    gmask &= ~zero
    if not has_led and not gmask.any():
        raise FitError("no usable rows: need gain or LED observations on the circuit's "
                       f"channels ({', '.join(circ.channels)})")
    every = bool(gmask.all())     # every row a gain row: the columns themselves, no copy
    fg, gg = (F, G) if every else (F[gmask], G[gmask])
    seg = se if every else se[gmask]
    # the probe's noise figures count only when every fitted gain row has one
    sg = seg / gg if len(gg) and np.all(np.isfinite(seg) & (seg > 0)) else None
    cg, logg = (chi if every else chi[gmask]), np.log(gg)
    if not has_led:     # gain rows only (a board of fit_many): no LED column to sift
        e = np.zeros(0)
        return _Rows(fg, cg, logg, sg, e, e.astype(np.int64), e.astype(np.int64), e, e,
                     lmask, warn, gain_grid(fg, cg, logg, sg))
    return _Rows(fg, cg, logg, sg, F[lmask], chi[lmask].astype(np.int64),
                 Y[lmask].astype(np.int64), LV[lmask], vin[lmask], lmask, warn,
                 gain_grid(fg, cg, logg, sg))
