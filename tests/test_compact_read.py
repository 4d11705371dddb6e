"""Reading a CSV into columns: the same rows as the row-by-row reader, in a fraction of
the memory (a 2-million-row file must fit a fit in 500 MB)."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl.dataset import Measurement, MeasurementSet
from hostctl.errors import InputError
from hostctl.rowstore import RowStore

num = st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e3, allow_nan=False))


def measurement_lists(flags: list[str], **cells: st.SearchStrategy) -> st.SearchStrategy:
    """Lists of rows with any of ``flags`` and the optional ``cells`` (field -> values)."""
    return st.lists(st.builds(
        Measurement, frequency_hz=st.floats(min_value=0.1, max_value=1e6),
        channel=st.sampled_from(["low", "band", "high"]), gain=num,
        led=st.one_of(st.none(), st.sampled_from([0, 1])),
        level_dbfs=st.one_of(st.none(), st.floats(min_value=-60, max_value=0)),
        flag=st.sampled_from(flags), **cells), min_size=1, max_size=30)


rows = measurement_lists(["", "clipped", "not-played|below-floor"], vout_v=num)


@settings(max_examples=60, deadline=None)
@given(rows)
def test_compact_read_equals_row_read(tmp_path_factory, ms: list[Measurement]) -> None:
    p = tmp_path_factory.mktemp("c") / "d.csv"
    text = MeasurementSet(ms, {"k": "v"}).to_csv()
    p.write_text(text)
    compact = MeasurementSet.read_csv(p)
    assert isinstance(compact.rows, RowStore)
    assert list(compact.rows) == MeasurementSet.parse_csv(text).rows == ms
    assert compact.meta == {"k": "v"}


def test_odd_rows_take_the_careful_path(tmp_path: Path) -> None:
    p = tmp_path / "d.csv"
    p.write_text('frequency_hz,channel,gain,vin_v,vout_v\r\n"100",low,,2,1\r\n'
                 "200, low ,0.5,,\r\n300,high,0.25,,\n")
    got = list(MeasurementSet.read_csv(p))
    assert [(m.frequency_hz, m.channel, m.gain) for m in got] == [
        (100.0, "low", 0.5), (200.0, "low", 0.5), (300.0, "high", 0.25)]


def test_compact_read_memory(tmp_path: Path) -> None:
    n = 60_000
    p = tmp_path / "big.csv"
    p.write_text("frequency_hz,channel,gain\n" + "".join(
        f"{20 + i * 0.3:.2f},{('low', 'band', 'high')[i % 3]},{1 / (1 + i):.6g}\n"
        for i in range(n)))
    tracemalloc.start()
    ms = MeasurementSet.read_csv(p)
    held, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    assert len(ms) == n and math.isclose(ms.rows[-1].gain, 1 / n, rel_tol=1e-5)
    assert ms.rows.nbytes() == n * (8 + 8 + 2 + 2)       # two float columns, two indices
    # a row object per row held ~250 bytes a row; the columns hold ~20
    assert held < 40 * n and peak < 60 * n, (held, peak)
    ms.append(Measurement(1.0, "low", gain=1.0))          # appending turns it into a list
    assert isinstance(ms.rows, list) and len(ms) == n + 1


pos = st.floats(min_value=1e-3, max_value=1e3)
full_rows = st.lists(st.builds(
    Measurement, frequency_hz=st.floats(min_value=0.1, max_value=1e6),
    channel=st.sampled_from(["low", "band", "high", "x y"]), gain=pos,
    led=st.sampled_from([0, 1]), vin_v=pos, vout_v=pos,
    level_dbfs=st.floats(min_value=-60, max_value=0), led_fraction=st.floats(0.0, 1.0),
    time_s=st.floats(min_value=0, max_value=1e5), gain_se=pos,
    flag=st.sampled_from(["", "clipped", "not-played|below-floor"])), min_size=1, max_size=40)


def read_watching_blocks(path: object) -> tuple[MeasurementSet, list[bool]]:
    """read_csv(path), and for each block it tried whether the block reader took it."""
    import hostctl.dataset as hm

    taken: list[bool] = []
    orig = hm._FastRow.parse_block

    def spy(self: object, lines: list[str]) -> object:
        got = orig(self, lines)
        taken.append(got is not None)
        return got

    hm._FastRow.parse_block = spy
    try:
        return MeasurementSet.read_csv(path), taken
    finally:
        hm._FastRow.parse_block = orig


@settings(max_examples=60, deadline=None)
@given(full_rows)
def test_block_read_equals_row_read(tmp_path_factory, ms: list[Measurement]) -> None:
    """Every cell filled: the rows are read a block at a time, to the same values."""
    p = tmp_path_factory.mktemp("b") / "d.csv"
    text = MeasurementSet(ms, {}).to_csv()
    p.write_text(text)
    compact, taken = read_watching_blocks(p)
    assert taken == [True]
    assert list(compact.rows) == MeasurementSet.parse_csv(text).rows == ms


def test_block_read_derives_gain_and_falls_back_per_line(tmp_path: Path) -> None:
    n = 10_000
    lines = [f"{100 + i},{('low', 'high')[i % 2]},2,{1 + i % 3}\n" for i in range(n)]
    p = tmp_path / "d.csv"
    p.write_text("frequency_hz,channel,vin_v,vout_v\n" + "".join(lines))
    got = MeasurementSet.read_csv(p)
    assert [m.gain for m in got.rows[:3]] == [0.5, 1.0, 1.5] and len(got) == n
    # one odd line in the middle of a block: the same error, at its own line
    lines[6000] = "100,low,0,1\n"
    p.write_text("frequency_hz,channel,vin_v,vout_v\n" + "".join(lines))
    with pytest.raises(InputError, match=r":6002\b|line 6002"):
        MeasurementSet.read_csv(p)
