"""Peak memory and time of `hostctl fit` on big generated CSVs (10k / 100k / 2M rows).

Each size is written once to a temp folder (the notebook's color organ, three channels,
gains with 1% noise, the ~29 bytes/row of a gains-only CSV) and fitted by a fresh
``python -m hostctl fit FILE --circuit color-organ --json`` process; the peak is that
process's maximum resident set (``ru_maxrss`` of the child), the time its wall clock.

    python benchmarks/bench_memory.py                 # all three sizes
    python benchmarks/bench_memory.py --rows 2000000  # one size
    python benchmarks/bench_memory.py --profile --rows 100000   # where the memory goes
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SIZES = (10_000, 100_000, 2_000_000)
CORNERS = {"low": 800.0, "band": (1000.0, 4000.0), "high": 5000.0}


def gains(ch: str, f: np.ndarray) -> np.ndarray:
    def lp(fc: float) -> np.ndarray:
        return 1 / np.sqrt(1 + (f / fc) ** 2)

    def hp(fc: float) -> np.ndarray:
        return (f / fc) / np.sqrt(1 + (f / fc) ** 2)

    if ch == "low":
        return lp(CORNERS["low"])
    if ch == "high":
        return hp(CORNERS["high"])
    lo, hi = CORNERS["band"]
    return hp(lo) * lp(hi)


def write_csv(path: Path, rows: int, seed: int = 0) -> None:
    """``rows`` gain rows, written in blocks so the generator itself stays small."""
    rng = np.random.default_rng(seed)
    chans = ("low", "band", "high")
    with open(path, "w", encoding="ascii") as fh:
        fh.write("# circuit: color-organ\nfrequency_hz,channel,gain\n")
        done = 0
        while done < rows:
            n = min(300_000, rows - done)
            f = np.round(np.exp(rng.uniform(np.log(20), np.log(20000), n)), 2)
            idx = (np.arange(done, done + n) % 3)
            g = np.empty(n)
            for i, ch in enumerate(chans):
                m = idx == i
                g[m] = gains(ch, f[m]) * (1 + 0.01 * rng.standard_normal(m.sum()))
            fh.write("".join(f"{fi:.2f},{chans[c]},{gi:.5g}\n"
                             for fi, c, gi in zip(f.tolist(), idx.tolist(), g.tolist(),
                                                  strict=True)))
            done += n


def run_fit(path: Path) -> tuple[float, float, int]:
    """(peak MB, seconds, exit code) of one `hostctl fit` process."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    t = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "hostctl", "fit", str(path), "--circuit",
                        "color-organ", "--json"], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    secs = time.monotonic() - t
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if peak <= before:
        print("  (peak below an earlier child's: re-run this size alone for its figure)")
    if r.returncode not in (0, 1):
        print(r.stderr.strip()[-500:])
    return peak / 1024, secs, r.returncode


def profile_read(path: Path) -> None:
    """tracemalloc of reading the CSV alone: the top allocation sites."""
    import tracemalloc

    sys.path.insert(0, str(ROOT))
    from hostctl.dataset import MeasurementSet

    tracemalloc.start(1)
    t = time.monotonic()
    ms = MeasurementSet.read_csv(path)
    secs = time.monotonic() - t
    cur, peak = tracemalloc.get_traced_memory()
    snap = tracemalloc.take_snapshot()
    print(f"read {len(ms)} rows in {secs:.1f} s (under tracemalloc): held {cur / 2**20:.0f} MB, "
          f"peak {peak / 2**20:.0f} MB")
    for st in snap.statistics("lineno")[:8]:
        print(f"  {st.size / 2**20:8.1f} MB  {st.count:>9} blocks  {st.traceback[0]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, action="append", help="rows (repeatable)")
    ap.add_argument("--profile", action="store_true", help="tracemalloc of the reading")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        print(f"{'rows':>10} {'MB file':>8} {'peak MB':>8} {'seconds':>8} exit")
        for n in args.rows or SIZES:
            path = Path(d) / f"rows{n}.csv"
            write_csv(path, n)
            if args.profile:
                profile_read(path)
                continue
            peak, secs, code = run_fit(path)
            print(f"{n:>10} {path.stat().st_size / 1e6:>8.1f} {peak:>8.0f} {secs:>8.1f} {code}",
                  flush=True)
            path.unlink()


if __name__ == "__main__":
    main()
