"""Whole calibrations on the virtual bench with one planning choice changed: how the design's
settings were measured (benchmarks/README.md, "The gain tones designed, not swept").

Like bench_calibrate.py (board ``bench``, seeds 1..N, installed = the board's nominal
parts), with, per run: the first gain tones given instead of designed (``--freqs``, placed as
the run places any tone; ``--freqs sweep`` is the old 12-tone log sweep), the pre-flight's
reference reading left out of the data (``--no-ref-row``), another silent floor window
(``--floor-ms``), amplitude window floor (``--window-ms``) or gaindesign setting
(``--set MIN_GAIN_PER_S=3``). Prints per seed and the means: tones, bench seconds, worst
corner error, intervals covering the true RC products, and each resistor's rms error.

    python benchmarks/calibrate_variants.py --seeds 30 --freqs sweep --no-ref-row
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_calibrate import one  # noqa: E402


def patch(args: argparse.Namespace) -> None:
    """Apply the variant to hostctl's run (this process only)."""
    from hostctl import calibrate, gaindesign, plan

    run = calibrate._Run
    if args.freqs:
        freqs = plan.log_sweep(12) if args.freqs == "sweep" else json.loads(args.freqs)
        run.gain_design = lambda self, ahead: [self.tone(f) for f in freqs]
    if args.no_ref_row:
        pre, rec = run.preflight, run.record

        def preflight(self) -> None:
            run.record = lambda self, *a, **k: True
            try:
                pre(self)
            finally:
                run.record = rec
        run.preflight = preflight
    if args.floor_ms:
        calibrate.FLOOR_WINDOW_MS = args.floor_ms
    for kv in args.set:
        k, v = kv.split("=")
        setattr(gaindesign, k, float(v))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", default="gain", choices=("gain", "both", "led-vf"))
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--freqs", default="", help="'sweep' or a JSON list of Hz")
    ap.add_argument("--no-ref-row", action="store_true")
    ap.add_argument("--floor-ms", type=int, default=0)
    ap.add_argument("--window-ms", type=int, default=200)
    ap.add_argument("--set", action="append", default=[], help="gaindesign NAME=VALUE")
    args = ap.parse_args(argv)
    import torch  # noqa: F401 - a process's first fit imports torch: not per run

    patch(args)
    runs = [one(args.mode, k, window_ms=args.window_ms) for k in range(1, args.seeds + 1)]
    for r in runs:
        print(f"seed {r['seed']:2d}: {r['tones']} tones, {r['bench_s']:.2f} s, worst corner "
              f"err {r['worst_corner_err']:.3%}, covered {r['covered']}/{r['intervals']}")
    names = list(runs[0]["log_err"])
    rms = {k: float(np.sqrt(np.mean([r["log_err"][k] ** 2 for r in runs]))) for k in names}
    print(f"{args.mode}: {np.mean([r['tones'] for r in runs]):.1f} tones, "
          f"{np.mean([r['bench_s'] for r in runs]):.2f} s, worst corner err "
          f"{np.mean([r['worst_corner_err'] for r in runs]):.3%}, covered "
          f"{sum(r['covered'] for r in runs)}/{sum(r['intervals'] for r in runs)}; rms err "
          + ", ".join(f"{k} {v:.3%}" for k, v in rms.items()))


if __name__ == "__main__":
    main()
