"""Real-bench seconds: whole calibrations against the virtual bench (no hardware).

``hostctl.calibrate.run`` with ``sim://?board=bench&seed=k`` (each seed is another board:
5 % resistors, 10 % capacitors), ``SimToneOutput`` on the probe's bench, the installed
(nominal) values given as ``hostctl calibrate --sim`` does. The bench's clock counts what a
real bench waits: the tone's fades, the sound card's output latency and the settle time per
tone (sims/tones.py, the numbers hostctl.audio sleeps), the MEASURE windows and serial bytes,
and the host's own compute between tones (process CPU seconds, sims/bench.py). Per mode:
tones, real-bench seconds and the host's share, wall seconds, and the worst corner error
against the board's true corners (1 / 2 pi R_true C_true). Modes gain, led (LED threshold
estimated from two levels), led-vf (the LEDs' 0.3 V switching voltage given, as
``--led-vf 0.3``) and both (each LED's threshold measured).

    python benchmarks/bench_calibrate.py [--seeds 5] [--modes gain,led-vf,both]
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

#: benchmark mode -> (calibrate mode, what the user knows of the LEDs)
MODES = {"gain": ("gain", {}), "led": ("led", {}), "led-vf": ("led", {"led_vf": 0.3}),
         "both": ("both", {})}


def one(mode: str, seed: int, max_tones: int | None = None, **settings: object) -> dict:
    """One calibration of bench board ``seed``; ``settings`` go to RunConfig (window_ms...)."""
    from hostctl import calibrate
    from hostctl.device import open_probe
    from sims.backend import install
    from sims.tones import SimToneOutput

    install()                      # opt in to the virtual bench's sim:// ports

    t0 = time.perf_counter()
    with open_probe(f"sim://?board=bench&seed={seed}") as probe:
        bench = probe.serial.bench
        out = SimToneOutput(bench)
        cal_mode, known = MODES[mode]
        cfg = calibrate.RunConfig(mode=cal_mode, max_tones=max_tones, **known, **settings,
                                  installed=dict(bench.board.resistors),
                                  capacitance=dict(bench.board.capacitance_f))
        try:
            with tempfile.TemporaryDirectory() as td:
                r = calibrate.run(probe, out, cfg, td)
        finally:
            out.close()
    err = worst_corner_error(r.fit.corner_hz,
                             true_corners(bench.true_values, bench.true_capacitances))
    covered, log_err = 0, {}
    for k, (lo, hi) in r.fit.ci95.items():   # the true RC product over the fitted C
        true = bench.true_values[k] * bench.true_capacitances[k] / r.fit.capacitance[k]
        covered += lo <= true <= hi
        log_err[k] = float(np.log(r.fit.values[k] / true))
    return {"seed": seed, "tones": r.tones, "bench_s": r.bench_time_s,
            "host_s": r.host_time_s, "host_share": r.host_time_s / r.bench_time_s,
            "waited_s": out.waited_s, "missed_slots": r.missed_slots,
            "wall_s": time.perf_counter() - t0,
            "worst_corner_err": err, "covered": covered, "intervals": len(r.fit.ci95),
            "precision_unmet": list(r.unmet), "log_err": log_err}


def run(seeds: int = 5, modes: tuple[str, ...] = ("gain", "led-vf", "both", "led"),
        max_tones: dict[str, int | None] | None = None) -> dict:
    import torch  # noqa: F401 - a process's first fit imports torch (~2 s of CPU): not per run

    out: dict = {"board": "bench", "seeds": seeds, "modes": {}}
    for mode in modes:
        mt = (max_tones or {}).get(mode)
        runs = [one(mode, k, mt) for k in range(1, seeds + 1)]
        out["modes"][mode] = {
            "max_tones": mt, "runs": runs,
            "tones_mean": float(np.mean([r["tones"] for r in runs])),
            "bench_s_mean": float(np.mean([r["bench_s"] for r in runs])),
            "bench_s_max": float(np.max([r["bench_s"] for r in runs])),
            "host_s_mean": float(np.mean([r["host_s"] for r in runs])),
            "host_share_max": float(np.max([r["host_share"] for r in runs])),
            "wall_s_mean": float(np.mean([r["wall_s"] for r in runs])),
            "worst_corner_err_mean": float(np.mean([r["worst_corner_err"] for r in runs])),
            "runs_precision_met": int(sum(not r["precision_unmet"] for r in runs)),
            "coverage": float(sum(r["covered"] for r in runs)
                              / max(1, sum(r["intervals"] for r in runs))),
        }
    return out


def table_rows(res: dict) -> list[tuple]:
    rows = []
    for mode, m in res["modes"].items():
        rows.append(("bench", f"{mode} mode: tones per run", m["tones_mean"], "-", None,
                     f"mean of {res['seeds']} seeds; precision met in "
                     f"{m['runs_precision_met']}/{res['seeds']}"))
        rows.append(("bench", f"{mode} mode: real-bench seconds", m["bench_s_mean"], "-",
                     None, f"max {m['bench_s_max']:.2f} s; host compute "
                     f"{m['host_s_mean']:.2f} s (at most {m['host_share_max']:.0%}); wall "
                     f"{m['wall_s_mean']:.1f} s; worst corner err "
                     f"{m['worst_corner_err_mean']:.2%}"))
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--modes", default=",".join(MODES),
                    help=f"comma-separated, of {', '.join(MODES)}")
    args = ap.parse_args(argv)
    modes = tuple(m for m in args.modes.split(",") if m)
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"--modes: unknown {', '.join(unknown)} (known: {', '.join(MODES)})")
    res = run(args.seeds, modes)
    print(json.dumps(res, indent=2))
    for mode, m in res["modes"].items():
        print(f"{mode:7s} {m['tones_mean']:5.1f} tones  real-bench {m['bench_s_mean']:6.2f} s "
              f"(max {m['bench_s_max']:.2f})  host {m['host_s_mean']:5.2f} s "
              f"(<= {m['host_share_max']:.0%})  worst corner err "
              f"{m['worst_corner_err_mean']:.3%}  coverage {m['coverage']:.0%}  precision met "
              f"{m['runs_precision_met']}/{res['seeds']}", file=sys.stderr)
    return res


if __name__ == "__main__":
    main()
