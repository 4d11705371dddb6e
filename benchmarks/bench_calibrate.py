"""Bench time: whole calibrations against the virtual bench (no hardware, simulated time).

``hostctl.calibrate.run`` with ``sim://?board=bench&seed=k`` (each seed is another board:
5 % resistors, 10 % capacitors), ``SimToneOutput`` on the probe's bench, the installed
(nominal) values given as ``hostctl calibrate --sim`` does. Per mode: tones used, simulated
bench seconds (tone + MEASURE windows + serial), wall seconds, and the worst corner error
against the board's true corners (1 / 2 pi R_true C_true). Modes gain, led (LED threshold
estimated) and both (each LED's threshold measured).

    python benchmarks/bench_calibrate.py [--seeds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import true_corners, worst_corner_error  # noqa: E402


def one(mode: str, seed: int, max_tones: int | None = None) -> dict:
    from hostctl import calibrate
    from hostctl.device import open_probe
    from sims.backend import install
    from sims.tones import SimToneOutput

    install()                      # opt in to the virtual bench's sim:// ports

    t0 = time.perf_counter()
    with open_probe(f"sim://?board=bench&seed={seed}") as probe:
        bench = probe.serial.bench
        out = SimToneOutput(bench)
        cfg = calibrate.RunConfig(mode=mode, max_tones=max_tones,
                                  installed=dict(bench.board.resistors),
                                  capacitance=dict(bench.board.capacitance_f))
        try:
            with tempfile.TemporaryDirectory() as td:
                r = calibrate.run(probe, out, cfg, td)
        finally:
            out.close()
    err = worst_corner_error(r.fit.corner_hz,
                             true_corners(bench.true_values, bench.true_capacitances))
    return {"seed": seed, "tones": r.tones, "bench_s": r.bench_time_s,
            "wall_s": time.perf_counter() - t0, "worst_corner_err": err,
            "precision_unmet": list(r.unmet)}


def run(seeds: int = 5, modes: tuple[str, ...] = ("gain", "led", "both"),
        max_tones: dict[str, int | None] | None = None) -> dict:
    out: dict = {"board": "bench", "seeds": seeds, "modes": {}}
    for mode in modes:
        mt = (max_tones or {}).get(mode)
        runs = [one(mode, k, mt) for k in range(1, seeds + 1)]
        out["modes"][mode] = {
            "max_tones": mt, "runs": runs,
            "tones_mean": float(np.mean([r["tones"] for r in runs])),
            "bench_s_mean": float(np.mean([r["bench_s"] for r in runs])),
            "wall_s_mean": float(np.mean([r["wall_s"] for r in runs])),
            "worst_corner_err_mean": float(np.mean([r["worst_corner_err"] for r in runs])),
            "runs_precision_met": int(sum(not r["precision_unmet"] for r in runs)),
        }
    return out


def table_rows(res: dict) -> list[tuple]:
    rows = []
    for mode, m in res["modes"].items():
        rows.append(("bench", f"{mode} mode: tones per run", m["tones_mean"], "-", None,
                     f"mean of {res['seeds']} seeds; precision met in "
                     f"{m['runs_precision_met']}/{res['seeds']}"))
        rows.append(("bench", f"{mode} mode: simulated bench seconds", m["bench_s_mean"], "-",
                     None, f"wall {m['wall_s_mean']:.1f} s; worst corner err "
                     f"{m['worst_corner_err_mean']:.2%}"))
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    args = ap.parse_args(argv)
    res = run(args.seeds)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
