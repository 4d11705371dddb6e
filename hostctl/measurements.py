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
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

from hostctl.errors import InputError
from hostctl.files import ascii_float, read_regular

#: Columns in the order they are written. The first two are required on reading.
COLUMNS = ("frequency_hz", "channel", "gain", "led", "vin_v", "vout_v",
           "level_dbfs", "led_fraction", "time_s", "flag", "gain_se")
REQUIRED = ("frequency_hz", "channel")
#: Lowest frequency a row may have: slower than this is a unit mistake (and a fit of it
#: would take minutes to converge).
MIN_FREQUENCY_HZ = 0.1
#: Flags that spoil a row's gain but not its LED state.
GAIN_ONLY_FLAGS = frozenset({"below-floor"})


@dataclass(frozen=True)
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
        self.rows.append(m)

    def extend(self, ms: Iterable[Measurement]) -> None:
        self.rows.extend(ms)

    @property
    def channels(self) -> list[str]:
        return sorted({m.channel for m in self.rows})

    def gain_rows(self) -> list[Measurement]:
        return [m for m in self.rows if m.gain_usable]

    def led_rows(self) -> list[Measurement]:
        return [m for m in self.rows if m.led_usable]

    # --- CSV -----------------------------------------------------------------------
    @classmethod
    def read_csv(cls, path: str | os.PathLike) -> MeasurementSet:
        path = str(path)
        raw = read_regular(path, "CSV file")
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise InputError(f"not UTF-8 text (byte {e.start})", path) from None
        if "\x00" in text:
            raise InputError("not a CSV text file (contains NUL bytes)", path)
        return cls.parse_csv(text, path)

    @classmethod
    def parse_csv(cls, text: str, path: str = "<data>") -> MeasurementSet:
        meta: dict[str, str] = {}
        data_lines: list[tuple[int, str]] = []
        for lineno, line in enumerate(text.splitlines(), start=1):
            s = line.strip()
            if not s:
                continue
            if s.startswith("#"):
                body = s[1:].strip()
                if ":" in body:
                    k, v = body.split(":", 1)
                    meta[k.strip()] = v.strip()
                continue
            data_lines.append((lineno, line))
        if not data_lines:
            raise InputError("no header row (empty file?)", path)
        header_line, header_text = data_lines[0]
        header = [h.strip() for h in next(csv.reader([header_text]))]
        seen: set[str] = set()
        for h in header:
            if h in seen:
                raise InputError(f"duplicated column '{h}'", path, header_line)
            seen.add(h)
        for req in REQUIRED:
            if req not in header:
                raise InputError(f"missing required column '{req}' (header: {','.join(header)})",
                                 path, header_line)
        unknown = [h for h in header if h not in COLUMNS]
        if unknown:
            warnings.warn(f"{path}:{header_line}: ignoring unknown column(s) {', '.join(unknown)}",
                          stacklevel=2)
        idx = {h: i for i, h in enumerate(header)}
        rows: list[Measurement] = []
        for lineno, line in data_lines[1:]:
            cells = next(csv.reader([line]))
            if len(cells) != len(header):
                raise InputError(f"{len(cells)} fields, header has {len(header)}", path, lineno)
            rows.append(_parse_row(cells, idx, path, lineno))
        if not rows:
            raise InputError("no data rows", path)
        return cls(rows, meta)

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
