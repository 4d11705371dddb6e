"""Measurement rows kept as columns: a big CSV costs ~20 bytes a row, not ~600.

A 2-million-row file held as :class:`~hostctl.dataset.Measurement` objects takes
over a gigabyte (an object, its floats, its strings per row); here each column is one
``array`` (NaN / -1 for an empty cell, channel and flag as indices into short lists), and
rows are built only while someone iterates, so a pass over them holds one at a time.
The store is read-only: :class:`~hostctl.dataset.MeasurementSet` turns it into a
list before it appends.
"""

from __future__ import annotations

import math
from array import array
from collections.abc import Callable, Iterator, Sequence
from itertools import islice, repeat, starmap
from typing import Any

#: Numeric columns and their array type code (led: -1 for empty).
NUMERIC = ("frequency_hz", "gain", "vin_v", "vout_v", "level_dbfs", "led_fraction", "time_s",
           "gain_se")


def numeric_columns(header: Sequence[str] | dict[str, int]) -> list[str]:
    """The numeric columns a CSV with this header fills, in NUMERIC order (gain also when
    it follows from vin_v and vout_v)."""
    derive = "vin_v" in header and "vout_v" in header
    return [c for c in NUMERIC
            if c in header or c == "frequency_hz" or (c == "gain" and derive)]


class Columns:
    """Growing columns for the fields a CSV header has; the rest stay None."""

    def __init__(self, cols: Sequence[str], has_led: bool) -> None:
        self.num = {c: array("d") for c in cols}
        self._arrays = list(self.num.values())
        self.led = array("b") if has_led else None
        self.channel = array("H")
        self.flag = array("H")
        self.names: list[str] = []
        self.flags: list[str] = [""]
        self._name_ix: dict[str, int] = {}
        self._flag_ix: dict[str, int] = {"": 0}

    def add_parsed(self, nums: Sequence[float], channel: str, led: int, flag: str) -> None:
        """One row: numbers in column order (NaN when empty), LED -1 when empty."""
        for col, v in zip(self._arrays, nums, strict=True):
            col.append(v)
        if self.led is not None:
            self.led.append(led)
        ix = self._name_ix.get(channel)
        self.channel.append(ix if ix is not None else self._index(channel, self.names,
                                                                   self._name_ix))
        fx = self._flag_ix.get(flag)
        self.flag.append(fx if fx is not None else self._index(flag, self.flags, self._flag_ix))

    def add_block(self, nums: Sequence[list[float]], channels: list[str], leds: list[int],
                  flags: list[str]) -> None:
        """Many rows, column by column (what :meth:`add_parsed` does row by row)."""
        for col, vals in zip(self._arrays, nums, strict=True):
            col.fromlist(vals)
        if self.led is not None:
            self.led.fromlist(leds)
        self.channel.fromlist(self._indices(channels, self.names, self._name_ix))
        self.flag.fromlist(self._indices(flags, self.flags, self._flag_ix))

    def add_arrays(self, nums: Sequence[Any], channels: Sequence[str], leds: Sequence[int],
                   flags: Sequence[str]) -> None:
        """Many rows from numeric arrays (one per column, in column order): their bytes
        copied at C speed, no Python float per cell."""
        for col, vals in zip(self._arrays, nums, strict=True):
            col.frombytes(memoryview(vals).cast("B"))
        if self.led is not None:
            self.led.frombytes(memoryview(leds).cast("B"))
        self.channel.fromlist(self._indices(list(channels), self.names, self._name_ix))
        self.flag.fromlist(self._indices(list(flags), self.flags, self._flag_ix))

    def _indices(self, keys: list[str], table: list[str], ix: dict[str, int]) -> list[int]:
        got = list(map(ix.get, keys))
        if None in got:     # a new name: numbered in order of first appearance
            got = [self._index(k, table, ix) for k in keys]
        return got  # type: ignore[return-value]

    @staticmethod
    def _index(s: str, table: list[str], ix: dict[str, int]) -> int:
        i = ix.get(s)
        if i is None:
            if len(table) >= 65535:
                raise ValueError("more than 65535 distinct names in one column")
            i = ix[s] = len(table)
            table.append(s)
        return i


def columns_from(frequency_hz: Any, channel: Sequence[str], columns: dict[str, Any]
                 ) -> Columns:
    """:class:`Columns` from whole columns (``columns``: the other fields by name, numbers
    with NaN / None for empty, ``led`` -1 / None for empty, ``flag`` strings); ValueError
    names a column whose length differs from ``channel``'s."""
    import numpy as np

    n = len(channel)
    columns = dict(columns)
    flags, led = columns.pop("flag", None), columns.pop("led", None)
    nums = {"frequency_hz": frequency_hz, **columns}
    for k, v in nums.items():
        a = np.asarray([math.nan if x is None else x for x in v] if isinstance(v, list)
                       else v, dtype=np.float64)
        if a.shape != (n,):
            raise ValueError(f"column {k} has shape {a.shape}, channel has {n} rows")
        nums[k] = np.ascontiguousarray(a)
    store = Columns([c for c in NUMERIC if c in nums], led is not None)
    leds = None
    if led is not None:
        leds = np.array([-1 if x is None else x for x in led], dtype=np.int8)
        if leds.shape != (n,):
            raise ValueError(f"column led has {len(leds)} rows, channel has {n}")
    flags = [""] * n if flags is None else [str(f) for f in flags]
    if len(flags) != n:
        raise ValueError(f"column flag has {len(flags)} rows, channel has {n}")
    store.add_arrays([nums[c] for c in store.num], [str(c) for c in channel], leds, flags)
    return store


def block_floats(col: list[str] | None, m: int
                  ) -> tuple[list[float], bool, list[float]] | None:
    """A column's cells as floats, NaN for an empty cell: (values, any empty, the values
    of the filled cells); None for a cell of only spaces (the careful reader words it).
    An absent or empty column costs no float() per cell."""
    if col is None:
        return [math.nan] * m, True, []
    empty = col.count("")
    if empty == m:
        return [math.nan] * m, True, []
    if not empty:
        vals = list(map(float, col))
        return vals, False, vals
    if any(c.isspace() for c in col):
        return None
    vals = [float(c) if c else math.nan for c in col]
    return vals, True, [v for v in vals if v == v]


def used_channels(rows: Sequence[Any]) -> list[str]:
    """The channel names some row uses, sorted (a store's without a row object)."""
    cols = getattr(rows, "columns", None)
    if cols is None:
        return sorted({m.channel for m in rows})
    import numpy as np

    c = cols()
    return sorted(c["channel_names"][i] for i in np.unique(c["channel"]).tolist())


def field_array(rows: Sequence[Any], name: str) -> Any:
    """One numeric field of every row as a numpy array (NaN where empty, ``led`` -1)."""
    import numpy as np

    cols = getattr(rows, "columns", None)
    if cols is not None:
        a = cols().get(name)
        return np.full(len(rows), -1 if name == "led" else math.nan) if a is None else a
    vals = [getattr(m, name) for m in rows]
    if name == "led":
        return np.array([-1 if v is None else v for v in vals], dtype=np.int64)
    return np.array(vals, dtype=float)


def _nan_none(v: float) -> float | None:
    return None if v != v else v


def _led(v: int) -> int | None:
    return None if v < 0 else v


class RowStore(Sequence):
    """A read-only sequence of rows backed by :class:`Columns`; ``row`` builds one (the
    measurements module passes its Measurement: columns do not import their rows)."""

    def __init__(self, cols: Columns, row: Callable[..., Any]) -> None:
        self._c = cols
        self._make = row

    def __len__(self) -> int:
        return len(self._c.channel)

    def _row(self, i: int, cols: list[tuple[str, array]], led: array | None) -> Any:
        kw = {}
        for name, col in cols:
            v = col[i]
            if v == v:          # not NaN
                kw[name] = v
        if led is not None and led[i] >= 0:
            kw["led"] = led[i]
        c = self._c
        return self._make(channel=c.names[c.channel[i]], flag=c.flags[c.flag[i]], **kw)

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        n = len(self)
        if i < 0:
            i += n
        if not 0 <= i < n:
            raise IndexError("row index out of range")
        return self._row(i, list(self._c.num.items()), self._c.led)

    def __iter__(self) -> Iterator[Any]:
        """Rows built column-wise (zip of C-level iterators, one constructor call a row):
        a pass over 2M rows is what the fit pays for not holding them."""
        c = self._c

        def num(name: str) -> Iterator[Any]:
            a = c.num.get(name)
            if a is None:
                return repeat(None)
            return a if name == "frequency_hz" else map(_nan_none, a)

        led = repeat(None) if c.led is None else map(_led, c.led)
        fields = (num("frequency_hz"), map(c.names.__getitem__, c.channel), num("gain"), led,
                  num("vin_v"), num("vout_v"), num("level_dbfs"), num("led_fraction"),
                  num("time_s"), map(c.flags.__getitem__, c.flag), num("gain_se"))
        return starmap(self._make, islice(zip(*fields, strict=False), len(self)))

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence) and not isinstance(other, str):
            return len(self) == len(other) and all(a == b for a, b in zip(self, other,
                                                                          strict=True))
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"RowStore({len(self)} rows)"

    def columns(self) -> dict[str, Any]:
        """Zero-copy numpy views of the columns (NaN / -1 for empty cells) plus 'channel'
        and 'flag' as index arrays with their 'channel_names' / 'flag_names': what a
        reader that needs the data as arrays (the fit) can take without a row object."""
        import numpy as np

        c = self._c
        out: dict[str, Any] = {k: np.frombuffer(v, dtype=np.float64) for k, v in c.num.items()}
        if c.led is not None:
            out["led"] = np.frombuffer(c.led, dtype=np.int8)
        out["channel"] = np.frombuffer(c.channel, dtype=np.uint16)
        out["flag"] = np.frombuffer(c.flag, dtype=np.uint16)
        out["channel_names"], out["flag_names"] = list(c.names), list(c.flags)
        return out

    def nbytes(self) -> int:
        c = self._c
        arrays = [*c.num.values(), c.channel, c.flag] + ([c.led] if c.led is not None else [])
        return sum(a.itemsize * len(a) for a in arrays)
