"""A big file is read and fitted in memory that grows by bytes per row, not by a Python
object (and a model graph) per row: the 2-million-row file must fit in 500 MB.

The fit runs in a fresh process that first imports everything the fit needs, notes its
peak resident set (``ru_maxrss``), then reads and fits; the growth of the peak is what the
rows cost. No clock is read: a loaded machine changes the time, not the bytes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hostctl.fit import gaingrid

ROOT = Path(__file__).resolve().parents[1]
ROWS = 240_000
#: a first, smaller file on the same path warms the process up (lazy libraries, the
#: model, the allocator's pools): the second file's extra rows are what is measured
WARM_ROWS = 60_000
#: what each extra row may add to the peak: ~20 B of columns as read, ~60 B of fit
#: columns and grid statistics, and headroom; a row object costs ~600 B, a row in the
#: model's graph more
BYTES_PER_ROW = 250
SLACK_MB = 16
CORNERS = {"low": 800.0, "band": (1000.0, 4000.0), "high": 5000.0}

CHILD = r"""
import json, resource, sys
import numpy, scipy.linalg, scipy.special, torch
from hostctl.fit import fit
from hostctl.dataset import MeasurementSet

def peak_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

out = {}
for name, path in (("warm", sys.argv[1]), ("big", sys.argv[2])):
    ms = MeasurementSet.read_csv(path)
    r = fit(ms, "color-organ-ideal")
    out[name] = {"peak_kb": peak_kb(), "rows": len(ms), "n_gain": r.n_gain,
                 "values": r.values, "trusted": r.trusted}
    del ms, r
print(json.dumps(out))
"""


def _gain(ch: str, f: np.ndarray) -> np.ndarray:
    if ch == "low":
        return 1 / np.sqrt(1 + (f / CORNERS["low"]) ** 2)
    if ch == "high":
        x = f / CORNERS["high"]
        return x / np.sqrt(1 + x * x)
    a, b = CORNERS["band"]
    return (f / a) / np.sqrt(1 + (f / a) ** 2) / np.sqrt(1 + (f / b) ** 2)


def _write(path: Path, n: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    f = np.round(np.exp(rng.uniform(math.log(20), math.log(20000), n)), 2)
    chans = ("low", "band", "high")
    idx = np.arange(n) % 3
    g = np.empty(n)
    for i, ch in enumerate(chans):
        m = idx == i
        g[m] = _gain(ch, f[m]) * (1 + 0.01 * rng.standard_normal(int(m.sum())))
    with open(path, "w", encoding="ascii") as fh:
        fh.write("frequency_hz,channel,gain\n")
        fh.writelines(f"{fi:.2f},{chans[c]},{gi:.5g}\n"
                      for fi, c, gi in zip(f.tolist(), idx.tolist(), g.tolist(), strict=True))


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="ru_maxrss in kB needs Linux")
def test_big_file_peak_memory_grows_by_bytes_per_row(tmp_path: Path) -> None:
    assert WARM_ROWS >= gaingrid.MIN_ROWS    # the path a 2-million-row file takes
    warm, big = tmp_path / "warm.csv", tmp_path / "big.csv"
    _write(warm, WARM_ROWS, 1)
    _write(big, ROWS, 2)
    r = subprocess.run([sys.executable, "-c", CHILD, str(warm), str(big)],
                       capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)},
                       timeout=1800)   # a hang guard only
    assert r.returncode == 0, r.stderr[-2000:]
    got = json.loads(r.stdout.strip().splitlines()[-1])
    for name, n in (("warm", WARM_ROWS), ("big", ROWS)):
        g = got[name]
        assert g["rows"] == g["n_gain"] == n and g["trusted"]
        # the data's own corners come back (1 % noise on 60k+ rows: far inside 0.5 %)
        for res, fc in (("R_low", 800.0), ("R_band_low", 4000.0), ("R_band_high", 1000.0),
                        ("R_high", 5000.0)):
            assert g["values"][res] == pytest.approx(1 / (2 * math.pi * fc * 1e-6), rel=5e-3)
    grew_mb = (got["big"]["peak_kb"] - got["warm"]["peak_kb"]) / 1024
    bound_mb = BYTES_PER_ROW * (ROWS - WARM_ROWS) / 2**20 + SLACK_MB
    assert grew_mb < bound_mb, (f"{ROWS - WARM_ROWS} more rows raised the peak by "
                                f"{grew_mb:.0f} MB (bound {bound_mb:.0f} MB)")
