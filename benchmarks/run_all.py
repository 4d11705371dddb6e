"""Every benchmark of hostctl against its peers and limits, in one run; a table and a JSON.

    python benchmarks/run_all.py [--quick] [--json benchmarks/results/latest.json]

Sections (each also runs alone, see its module):
  fit         hostctl fit vs scipy least_squares (LM) vs the notebook's gradient descent, on
              the same rows (bench_fit.peer_compare): time, iterations, error, as ratios
  netlist     hostctl fit vs scipy least_squares (LM) on the same netlist preset (probe front
              end, film-ESR nuisances), rows and estimator (bench_netlist.peer_ratio)
  efficiency  RMSE of each fitted log R over many noisy data sets / the Cramer-Rao bound,
              and the 95 % interval coverage (bench_efficiency)
  led         LED mode: corner error vs tones, adaptive bisection vs log grid vs random
              (bench_led)
  scale       fit_many vs a loop over fit(), 1..1000 boards (bench_scale)
  bench       whole calibrations against the virtual bench: tones, simulated seconds
              (bench_calibrate)

Speed is only ever judged as a ratio to a peer timed in the same process (the one absolute
target, 1000 boards in under 10 s, is labelled machine dependent). ``--quick`` (< 60 s) is
what tests/test_benchmarks_smoke.py runs; its numbers are noisier, not different.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import bench_calibrate  # noqa: E402
import bench_efficiency  # noqa: E402
import bench_led  # noqa: E402
import bench_netlist  # noqa: E402
import bench_scale  # noqa: E402

SECTIONS = ("fit", "netlist", "efficiency", "led", "scale", "bench")

QUICK = {"repeats": 2, "gd_runs": ((1e5, 300), (200.0, 100)), "trials": 200, "led_seeds": 2,
         "budgets": (20, 40), "sizes": (1, 10), "bench_seeds": 1,
         "bench_max_tones": {"gain": 12, "led": 16, "led-vf": 16, "both": 16}}
FULL = {"repeats": 7, "gd_runs": ((1e5, 100_000), (200.0, 20_000)), "trials": 2000,
        "led_seeds": 20, "budgets": (20, 40, 80), "sizes": (1, 10, 100, 1000),
        "bench_seeds": 5, "bench_max_tones": None}


def fit_section(cfg: dict) -> dict:
    import bench_fit

    from hostctl.circuits import NOTEBOOK_VALUES

    gain, _ = bench_fit.notebook_sets(bench_fit.NOTEBOOK_CIRCUIT)
    truth = dict(NOTEBOOK_VALUES)
    out = {"data": "course notebook: 1000 log-uniform tones 1 Hz-1 MHz x 3 channels",
           "noise_free": bench_fit.peer_compare(gain, truth, repeats=cfg["repeats"],
                                                gd_runs=cfg["gd_runs"]),
           "noisy_1pct": bench_fit.peer_compare(bench_fit.noisy_copy(gain, 0.01, 3), truth,
                                                repeats=cfg["repeats"], gd_runs=cfg["gd_runs"])}
    return out


def fit_rows(res: dict) -> list[tuple]:
    rows = []
    for key, label in (("noise_free", "exact data"), ("noisy_1pct", "1% noise")):
        r = res[key]
        h, s = r["hostctl"], r["scipy_lm"]
        rows.append(("fit", f"{label}: time hostctl / scipy LM", r["ratio_time_vs_scipy"], "-",
                     None, f"{1e3 * h['seconds']:.1f} vs {1e3 * s['seconds']:.1f} ms; "
                     f"{h['iterations']} it vs {s['iterations']} nfev"))
        hf, sf = r["hostctl_far"], r["scipy_lm_far"]
        rows.append(("fit", f"{label}: time hostctl / scipy LM, start 1.5x off",
                     r["ratio_time_vs_scipy_far"], "-", None,
                     f"{1e3 * hf['seconds']:.1f} vs {1e3 * sf['seconds']:.1f} ms; "
                     f"{hf['iterations']} it vs {sf['iterations']} nfev"))
        if key == "noisy_1pct":
            rows.append(("fit", f"{label}: max error hostctl / scipy LM",
                         r["ratio_err_vs_scipy"], "~1 (same estimator)",
                         abs(r["ratio_err_vs_scipy"] - 1) < 0.01,
                         f"{h['max_rel_err']:.2e} vs {s['max_rel_err']:.2e}"))
        else:
            rows.append(("fit", f"{label}: max error hostctl (scipy)", h["max_rel_err"], "< 1e-6",
                         h["max_rel_err"] < 1e-6, f"scipy {s['max_rel_err']:.1e}"))
        for g in r["notebook_gd"]:
            conv = "converged" if g["converged"] else "not converged"
            rows.append(("fit", f"{label}: time hostctl / notebook GD lr {g['lr']:g}",
                         g["ratio_time_hostctl_vs_gd"], "< 1", g["ratio_time_hostctl_vs_gd"] < 1,
                         f"GD {g['seconds']:.2f} s, {g['iterations']} steps ({conv}, max "
                         f"{g['max_steps']})"))
            rows.append(("fit", f"{label}: error hostctl / notebook GD lr {g['lr']:g}",
                         g["ratio_err_hostctl_vs_gd"], "< 1", g["ratio_err_hostctl_vs_gd"] < 1,
                         f"{h['max_rel_err']:.1e} vs {g['max_rel_err']:.1e}"))
    return rows


def netlist_section(cfg: dict) -> dict:
    return {name: bench_netlist.peer_ratio(name, 100, repeats=cfg["repeats"])
            for name in bench_netlist.PEERS}


def netlist_rows(res: dict) -> list[tuple]:
    rows = []
    for name, r in res.items():
        h = r["hostctl"]
        for key, label in (("scipy_lm_analytic", "analytic J"), ("scipy_lm_fd", "finite-diff J")):
            s = r[key]
            rows.append(("netlist", f"{name}, 100 noisy tones: time hostctl / scipy LM "
                         f"({label})", r[f"ratio_{key}"], "<= 1 (issue 18)" if
                         key == "scipy_lm_analytic" else "-", None,
                         f"{1e3 * h['seconds']:.1f} vs {1e3 * s['seconds']:.1f} ms; "
                         f"{h['iterations']} it vs {s['nfev']} fev + {s['njev']} jev; R differ "
                         f"{s['max_rel_diff_R_vs_hostctl']:.0e}"))
    return rows


def _finite(obj: object) -> object:
    """JSON has no inf/nan: write them as null (the smoke test then flags them)."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def print_table(rows: list[tuple]) -> None:
    w = max(len(r[1]) for r in rows)
    print(f"{'section':<10} {'metric':<{w}} {'value':>10}  {'target':<19} {'ok':<4} detail")
    print("-" * (w + 60))
    for sec, name, val, target, ok, detail in rows:
        v = f"{val:10.3g}" if isinstance(val, (int, float)) else f"{val!s:>10}"
        flag = "" if ok is None else ("yes" if ok else "NO")
        print(f"{sec:<10} {name:<{w}} {v}  {target:<19} {flag:<4} {detail}")


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="small sizes (smoke test, < 60 s)")
    ap.add_argument("--json", dest="json_path", default=None, help="write the results here")
    ap.add_argument("--only", default=",".join(SECTIONS),
                    help=f"comma-separated subset of {','.join(SECTIONS)}")
    args = ap.parse_args(argv)
    only = [s.strip() for s in args.only.split(",") if s.strip()]
    bad = [s for s in only if s not in SECTIONS]
    if bad:
        ap.error(f"unknown section(s) {', '.join(bad)} (known: {', '.join(SECTIONS)})")
    import torch

    torch.set_num_threads(1)   # what fit() uses; and the machine is shared
    cfg = QUICK if args.quick else FULL
    t_all = time.perf_counter()
    res: dict = {"meta": {"quick": args.quick, "python": platform.python_version(),
                          "torch": torch.__version__, "machine": platform.machine(),
                          "started_utc": datetime.now(UTC).isoformat(timespec="seconds")},
                 "sections": {}, "seconds": {}}
    rows: list[tuple] = []
    runners = {
        "fit": (lambda: fit_section(cfg), fit_rows),
        "netlist": (lambda: netlist_section(cfg), netlist_rows),
        "efficiency": (lambda: bench_efficiency.run(cfg["trials"]), bench_efficiency.table_rows),
        "led": (lambda: bench_led.run(cfg["led_seeds"], cfg["budgets"], cfg["repeats"]),
                bench_led.table_rows),
        "scale": (lambda: bench_scale.run(cfg["sizes"], rounds=cfg["repeats"]),
                  bench_scale.table_rows),
        "bench": (lambda: bench_calibrate.run(cfg["bench_seeds"],
                                              max_tones=cfg["bench_max_tones"]),
                  bench_calibrate.table_rows),
    }
    for name in only:
        t0 = time.perf_counter()
        print(f"[{name}] running ...", file=sys.stderr, flush=True)
        run, to_rows = runners[name]
        r = run()
        res["sections"][name] = r
        res["seconds"][name] = time.perf_counter() - t0
        rows += to_rows(r)
    res["seconds"]["total"] = time.perf_counter() - t_all
    res["table"] = [{"section": s, "metric": m, "value": v, "target": t, "ok": ok, "detail": d}
                    for s, m, v, t, ok, d in rows]
    print_table(rows)
    sys.stdout.flush()
    print(f"total {res['seconds']['total']:.1f} s "
          f"({', '.join(f'{k} {v:.1f}' for k, v in res['seconds'].items() if k != 'total')})")
    if args.json_path:
        out = Path(args.json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(_finite(res), indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
