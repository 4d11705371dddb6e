"""Reading a CSV into columns: the same rows as the row-by-row reader, in a fraction of
the memory (a 2-million-row file must fit a fit in 500 MB)."""

from __future__ import annotations

import math
import tracemalloc
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl.measurements import Measurement, MeasurementSet
from hostctl.rowstore import RowStore

num = st.one_of(st.none(), st.floats(min_value=0.0, max_value=1e3, allow_nan=False))
rows = st.lists(st.builds(
    Measurement, frequency_hz=st.floats(min_value=0.1, max_value=1e6),
    channel=st.sampled_from(["low", "band", "high"]), gain=num,
    led=st.one_of(st.none(), st.sampled_from([0, 1])), vout_v=num,
    level_dbfs=st.one_of(st.none(), st.floats(min_value=-60, max_value=0)),
    flag=st.sampled_from(["", "clipped", "not-played|below-floor"])), min_size=1, max_size=30)


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
