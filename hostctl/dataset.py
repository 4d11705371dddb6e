"""Measurements: one type for what the bench records and what the fit reads.

A :class:`Measurement` is one observation of one channel at one tone; a
:class:`MeasurementSet` is a list of them plus metadata (``# key: value`` comment lines
in the CSV). The CSV format is documented in README.md and is stable.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import tempfile
import warnings
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from itertools import repeat
from pathlib import Path
from typing import Any

from hostctl import rowstore
from hostctl.errors import InputError
from hostctl.files import ascii_float, open_regular
from hostctl.rowstore import Columns, RowStore, numeric_columns

#: Columns in the order they are written. The first two are required on reading.
COLUMNS = ("frequency_hz", "channel", "gain", "led", "vin_v", "vout_v",
           "level_dbfs", "led_fraction", "time_s", "flag", "gain_se")
REQUIRED = ("frequency_hz", "channel")
#: Lowest frequency a row may have: slower than this is a unit mistake (and a fit of it
#: would take minutes to converge).
MIN_FREQUENCY_HZ = 0.1
#: Flags that spoil a row's gain but not its LED state.
GAIN_ONLY_FLAGS = frozenset({"below-floor"})


@dataclass(frozen=True, slots=True)
class Measurement:
    """One channel at one tone: a gain, an LED state, or both."""

    frequency_hz: float
    channel: str
    gain: float | None = None        # |Vout/Vin|, linear
    led: int | None = None           # 0 or 1
    vin_v: float | None = None       # peak amplitudes
    vout_v: float | None = None
    level_dbfs: float | None = None  # tone level asked of the sound card
    led_fraction: float | None = None  # fraction of samples the LED was lit
    time_s: float | None = None      # seconds since the session started
    flag: str = ""                   # sanity-check flags; flagged rows are not fitted
    gain_se: float | None = None     # standard error of gain (linear), from the probe's numbers

    @property
    def flags(self) -> set[str]:
        return {f for f in self.flag.split("|") if f}

    @property
    def gain_usable(self) -> bool:
        """A gain may be fitted only from an unflagged row."""
        return self.gain is not None and not self.flag

    @property
    def led_usable(self) -> bool:
        """An LED state needs the tone to have arrived; a weak analog signal does not matter."""
        return self.led is not None and not (self.flags - GAIN_ONLY_FLAGS)


@dataclass
class MeasurementSet:
    """Measurements plus the metadata needed to re-fit them."""

    rows: list[Measurement] = field(default_factory=list)
    meta: dict[str, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[Measurement]:
        return iter(self.rows)

    def append(self, m: Measurement) -> None:
        self._as_list().append(m)

    def extend(self, ms: Iterable[Measurement]) -> None:
        self._as_list().extend(ms)

    def _as_list(self) -> list[Measurement]:
        """Rows read compactly (a RowStore) become a list before anything is added."""
        if not isinstance(self.rows, list):
            self.rows = list(self.rows)
        return self.rows

    @property
    def channels(self) -> list[str]:
        return rowstore.used_channels(self.rows)

    def column(self, name: str) -> Any:
        """One numeric field of every row as a numpy array (NaN where empty, ``led`` -1):
        the columns themselves when the rows are held as columns (a big file is not turned
        into a Measurement a row to ask one thing of it), else one pass over the rows."""
        if name not in COLUMNS or name in ("channel", "flag"):
            raise ValueError(f"column: '{name}' is not a numeric column")
        return rowstore.field_array(self.rows, name)

    def gain_rows(self) -> list[Measurement]:
        return [m for m in self.rows if m.gain_usable]

    def led_rows(self) -> list[Measurement]:
        return [m for m in self.rows if m.led_usable]

    @classmethod
    def from_columns(cls, frequency_hz: Any, channel: Sequence[str],
                     meta: dict[str, str] | None = None, **columns: Any) -> MeasurementSet:
        """Rows given as columns (arrays or sequences, one value a row; NaN or None is an
        empty cell, and an LED -1 or None; ``flag`` a column of strings): held as compact
        columns (:mod:`hostctl.rowstore`), so a fit reads them without building a row
        object, while iterating still gives :class:`Measurement` rows."""
        unknown = sorted(set(columns) - set(COLUMNS))
        if unknown:
            raise InputError(f"from_columns: unknown column(s) {', '.join(unknown)}")
        try:
            store = rowstore.columns_from(frequency_hz, channel, columns)
        except ValueError as e:
            raise InputError(f"from_columns: {e}") from None
        return cls(RowStore(store, Measurement), dict(meta or {}))  # type: ignore[arg-type]

    # --- CSV -----------------------------------------------------------------------
    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> MeasurementSet:
        """Stream a CSV file into compact columns (see :mod:`hostctl.rowstore`): a file of
        millions of rows is never held as text or as one object per row."""
        path = str(path)
        fd = open_regular(path, "CSV file")
        with io.TextIOWrapper(os.fdopen(fd, "rb"), encoding="utf-8-sig", newline="") as fh:
            try:
                return cls._parse_lines(fh, path, compact=True)
            except UnicodeDecodeError:
                raise InputError("not UTF-8 text", path) from None

    @classmethod
    def parse_csv(cls, text: str, path: str = "<data>", compact: bool = False
                  ) -> MeasurementSet:
        """``compact``: rows held as columns (read-only until something is appended)."""
        return cls._parse_lines(io.StringIO(text, newline=""), path, compact=compact)

    @classmethod
    def _parse_lines(cls, lines: Iterable[str], path: str, compact: bool) -> MeasurementSet:
        st = _Parse(path, compact)
        pending: list[str] = []
        first = 0
        for lineno, line in enumerate(_text_lines(lines), start=1):
            if st.store is None:          # before the header, or rows as objects
                st.line(lineno, line)
                continue
            if not pending:
                first = lineno
            pending.append(line)
            if len(pending) == READ_BLOCK:
                st.block(first, pending)
                pending = []
        if pending:
            st.block(first, pending)
        meta, header, header_line, store, rows = (st.meta, st.header, st.header_line,
                                                  st.store, st.rows)
        if header is None:
            raise InputError("no header row (empty file?)", path)
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            warnings.warn(f"{path}:{header_line}: ignoring unknown column(s) {', '.join(unknown)}",
                          stacklevel=3)
        out = RowStore(store, Measurement) if store is not None else rows
        if not len(out):
            raise InputError("no data rows", path)
        return cls(out, meta)  # type: ignore[arg-type]

    def to_csv(self) -> str:
        buf = io.StringIO()
        for k, v in self.meta.items():
            buf.write(f"# {k}: {v}\n")
        buf.write(",".join(COLUMNS) + "\n")
        for m in self.rows:
            buf.write(format_row(m) + "\n")
        return buf.getvalue()

    def write_csv(self, path: str | os.PathLike) -> None:
        """Write atomically (temp file + rename): a reader never sees half a file."""
        atomic_write(path, self.to_csv())


#: lines read as one block when the file is read into columns
READ_BLOCK = 4096


class _Parse:
    """One CSV being read: metadata, header, and rows (as columns or as objects)."""

    def __init__(self, path: str, compact: bool) -> None:
        self.path, self.compact = path, compact
        self.meta: dict[str, str] = {}
        self.header: list[str] | None = None
        self.header_line = 0
        self.store: Columns | None = None
        self.rows: list[Measurement] = []

    def line(self, lineno: int, line: str) -> None:
        """One line: a comment, the header, or a row (a fast row, else the careful path
        that words what is wrong)."""
        path = self.path
        if "\x00" in line:
            raise InputError("not a CSV text file (contains NUL bytes)", path)
        s = line.strip()
        if not s:
            return
        if s.startswith("#"):
            body = s[1:].strip()
            if ":" in body:
                k, v = body.split(":", 1)
                self.meta[k.strip()] = v.strip()
            return
        if self.header is None:
            self.header, self.header_line = _header(line, path, lineno), lineno
            self.idx = {h: i for i, h in enumerate(self.header)}
            self.fast = _FastRow(self.idx, len(self.header))
            if self.compact:
                self.store = Columns(self.fast.cols, "led" in self.idx)
            return
        fast, store = self.fast, self.store
        if fast.ok(line):
            got = fast.parse(line)
            if got is not None:
                if store is not None:
                    store.add_parsed(*got)
                else:
                    self.rows.append(fast.measurement(*got))
                return
        cells = next(csv.reader([line]))
        if len(cells) != len(self.header):
            raise InputError(f"{len(cells)} fields, header has {len(self.header)}", path,
                             lineno)
        m = _parse_row(cells, self.idx, path, lineno)
        if store is not None:
            store.add_parsed([math.nan if getattr(m, c) is None else getattr(m, c)
                              for c in fast.cols], m.channel,
                             -1 if m.led is None else m.led, m.flag)
        else:
            self.rows.append(m)

    def block(self, first: int, lines: list[str]) -> None:
        """Lines ``first``.. into the columns: all at once when every one is a plain row
        (a few C-level passes over the block), else line by line."""
        got = self.fast.parse_block(lines)
        if got is not None and self.store is not None:
            self.store.add_block(*got)
            return
        for k, line in enumerate(lines):
            self.line(first + k, line)


def _text_lines(lines: Iterable[str]) -> Iterator[str]:
    """Lines without their end (``\\n``, ``\\r\\n`` or a lone ``\\r``, as str.splitlines)."""
    for chunk in lines:
        if "\r" in chunk.rstrip("\r\n"):
            yield from chunk.splitlines()
        else:
            yield chunk.rstrip("\r\n")


def _header(line: str, path: str, lineno: int) -> list[str]:
    header = [h.strip() for h in next(csv.reader([line]))]
    seen: set[str] = set()
    for h in header:
        if h in seen:
            raise InputError(f"duplicated column '{h}'", path, lineno)
        seen.add(h)
    for req in REQUIRED:
        if req not in header:
            raise InputError(f"missing required column '{req}' (header: {','.join(header)})",
                             path, lineno)
    return header


#: column -> (lowest, highest) a value may have; vin_v must also be > 0 (see _parse_row)
_LIMITS = {"frequency_hz": (MIN_FREQUENCY_HZ, 1e7), "gain": (0.0, 1e6), "vin_v": (0.0, 1e4),
           "vout_v": (0.0, 1e4), "level_dbfs": (-1e9, 1e9), "led_fraction": (0.0, 1.0),
           "time_s": (-1e9, 1e9), "gain_se": (0.0, 1e6)}


class _FastRow:
    """The common row (ASCII, no quotes, numbers in range) in a few float() calls; any
    other row goes to :func:`_parse_row`, which finds and words what is wrong.

    ``parse`` gives the numeric cells in :data:`hostctl.rowstore.NUMERIC` order of the
    columns present (NaN when empty), the channel, the LED (-1 when empty) and the flag.
    """

    def __init__(self, idx: dict[str, int], n: int) -> None:
        self.n = n
        self.cols = numeric_columns(idx)
        self.num = [(idx.get(c, -1), *_LIMITS[c]) for c in self.cols]
        self.vin = idx.get("vin_v", -1)
        self.gain = self.cols.index("gain") if "gain" in self.cols else -1
        self.derive = "vin_v" in idx and "vout_v" in idx
        self.pair = (self.cols.index("vin_v"), self.cols.index("vout_v")) if self.derive \
            else (0, 0)
        self.ch = idx["channel"]
        self.led = idx.get("led")
        self.flag = idx.get("flag")
        self.idx_gain = idx.get("gain", -1)

    @staticmethod
    def ok(line: str) -> bool:
        return line.isascii() and '"' not in line and "_" not in line

    def parse(self, line: str) -> tuple[list[float], str, int, str] | None:
        cells = line.split(",")
        if len(cells) != self.n:
            return None
        nums: list[float] = []
        for i, lo, hi in self.num:
            s = cells[i] if i >= 0 else ""
            if not s or s.isspace():
                nums.append(math.nan)
                continue
            try:
                v = float(s)
            except ValueError:
                return None
            if not lo <= v <= hi or (v == 0 and i == self.vin):
                return None
            nums.append(v)
        if nums[0] != nums[0]:              # no frequency
            return None
        ch = cells[self.ch].strip()
        if not ch:
            return None
        led = -1
        if self.led is not None:
            s = cells[self.led].strip()
            if s:
                if s not in ("0", "1"):
                    return None
                led = 1 if s == "1" else 0
        if self.derive and nums[self.gain] != nums[self.gain]:   # gain empty: Vout/Vin
            vin, vout = nums[self.pair[0]], nums[self.pair[1]]
            nums[self.gain] = vout / vin if vin == vin and vout == vout else math.nan
        flag = cells[self.flag].strip() if self.flag is not None else ""
        return nums, ch, led, flag

    def parse_block(self, lines: list[str]
                    ) -> tuple[list[list[float]], list[str], list[int], list[str]] | None:
        """:meth:`parse` of many lines at once, or None unless every line is a plain row
        (ASCII, no quote, comment, NaN or infinity; numbers in range; a cell empty or a
        number): the same values ``parse`` gives, column by column."""
        text = ",".join(lines)
        low = text.lower()
        n = self.n
        if (not text.isascii() or any(c in text for c in '"_#\x00') or "nan" in low
                or "inf" in low or set(map(str.count, lines, repeat(","))) != {n - 1}):
            return None
        cells = text.split(",")
        nums: list[list[float]] = []
        try:
            for k, (i, lo, hi) in enumerate(self.num):
                vals = rowstore.block_floats(cells[i::n] if i >= 0 else None, len(lines))
                if vals is None or (k == 0 and vals[1]):
                    return None           # a whitespace cell, or a row without frequency
                full, present = vals[0], vals[2]
                if present and (not (lo <= min(present) and max(present) <= hi)
                                or (i == self.vin and 0.0 in present)):
                    return None
                nums.append(full)
        except ValueError:
            return None
        if self.derive:     # an empty gain: Vout / Vin (NaN unless both are there)
            vin, vout = nums[self.pair[0]], nums[self.pair[1]]
            nums[self.gain] = [b / a if g != g else g for g, a, b
                               in zip(nums[self.gain], vin, vout, strict=True)]
        chans = list(map(str.strip, cells[self.ch::n]))
        if not all(chans):
            return None
        leds = [-1] * len(lines)
        if self.led is not None:
            leds = list(map(_LED.get, map(str.strip, cells[self.led::n])))
            if None in leds:
                return None
        flags = list(map(str.strip, cells[self.flag::n])) if self.flag is not None \
            else [""] * len(lines)
        return nums, chans, leds, flags

    def measurement(self, nums: list[float], ch: str, led: int, flag: str) -> Measurement:
        kw = {c: v for c, v in zip(self.cols, nums, strict=True) if v == v}
        return Measurement(channel=ch, led=None if led < 0 else led, flag=flag, **kw)


#: an LED cell as the fast path reads it: 0, 1, or empty (-1)
_LED = {"0": 0, "1": 1, "": -1}


def format_row(m: Measurement, columns: tuple[str, ...] = COLUMNS) -> str:
    """One CSV line; ``columns`` lets a resumed session keep its own (older) header."""
    d = asdict(m)
    out = []
    for c in columns:
        v = d.get(c)
        if v is None:
            out.append("")
        elif isinstance(v, float):
            out.append(repr(v))
        else:
            out.append(str(v))
    return ",".join(out)


def _num(cells: list[str], idx: dict[str, int], col: str, path: str, lineno: int,
         *, positive: bool = False, nonneg: bool = False, hi: float = 1e9,
         lo: float | None = None) -> float | None:
    if col not in idx:
        return None
    s = cells[idx[col]].strip()
    if s == "":
        return None
    try:
        v = ascii_float(s)
    except ValueError:
        raise InputError(f"'{s}' is not a number", path, lineno, col) from None
    if not math.isfinite(v):
        raise InputError(f"'{s}' is not a finite number", path, lineno, col)
    if positive and v <= 0:
        raise InputError(f"{s} must be > 0", path, lineno, col)
    if nonneg and v < 0:
        raise InputError(f"{s} must be >= 0", path, lineno, col)
    if lo is not None and v < lo:
        raise InputError(f"{s} is out of range (at least {lo:g})", path, lineno, col)
    if abs(v) > hi:      # physically absurd magnitudes would overflow the fit
        raise InputError(f"{s} is out of range (at most {hi:g})", path, lineno, col)
    return v


def _parse_row(cells: list[str], idx: dict[str, int], path: str, lineno: int) -> Measurement:
    f = _num(cells, idx, "frequency_hz", path, lineno, positive=True, hi=1e7,
             lo=MIN_FREQUENCY_HZ)
    if f is None:
        raise InputError("frequency is empty", path, lineno, "frequency_hz")
    ch = cells[idx["channel"]].strip()
    if not ch:
        raise InputError("channel is empty", path, lineno, "channel")
    gain = _num(cells, idx, "gain", path, lineno, nonneg=True, hi=1e6)
    vin = _num(cells, idx, "vin_v", path, lineno, positive=True, hi=1e4)
    vout = _num(cells, idx, "vout_v", path, lineno, nonneg=True, hi=1e4)
    if gain is None and vin is not None and vout is not None:
        gain = vout / vin
    led = None
    if "led" in idx and cells[idx["led"]].strip() != "":
        s = cells[idx["led"]].strip()
        if s not in ("0", "1"):
            raise InputError(f"LED state must be 0 or 1, got '{s}'", path, lineno, "led")
        led = int(s)
    frac = _num(cells, idx, "led_fraction", path, lineno, nonneg=True)
    if frac is not None and frac > 1:
        raise InputError(f"{frac} is not a fraction in 0..1", path, lineno, "led_fraction")
    return Measurement(
        frequency_hz=f, channel=ch, gain=gain, led=led, vin_v=vin, vout_v=vout,
        level_dbfs=_num(cells, idx, "level_dbfs", path, lineno),
        led_fraction=frac,
        time_s=_num(cells, idx, "time_s", path, lineno),
        flag=cells[idx["flag"]].strip() if "flag" in idx else "",
        gain_se=_num(cells, idx, "gain_se", path, lineno, nonneg=True, hi=1e6),
    )


def atomic_write(path: str | os.PathLike, text: str) -> None:
    """Replace ``path`` with ``text`` via a temp file in the same folder and rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


def atomic_write_json(path: str | os.PathLike, obj: object) -> None:
    atomic_write(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


__all__ = ["COLUMNS", "Measurement", "MeasurementSet", "atomic_write", "atomic_write_json",
           "format_row", "replace", "fields"]
