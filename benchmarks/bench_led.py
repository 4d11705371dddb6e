"""LED mode: corner error against the number of tones, three ways of choosing the tones.

* adaptive: hostctl's plan -- the 12-tone log sweep calibrate starts with, then
  ``hostctl.plan.next_led_tone`` (bisection of the widest on/off bracket) up to the budget
  (tones not rounded to the probe's rate here; one level, the threshold known);
* grid: a fixed log grid of ``budget`` tones over 20 Hz..20 kHz;
* random: the notebook's log-uniform random tones (``10**U``), over the same band (a sound
  card plays nothing above 20 kHz; the notebook drew 1 Hz..1 MHz).

Each tone gives the three channels' LEDs (noise free, lit iff |H| > 1/sqrt(2), the threshold
known). Boards: the bench's E24 values with 5 % resistors, one per seed. Every set is fitted
by ``hostctl.fit.fit_many`` (the LED interval fit); error = the worst |corner error| over the
4 resistors, averaged over the seeds (also the median and the share of runs within 1 %).

    python benchmarks/bench_led.py [--seeds 20] [--budgets 20,40,80]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_like_values, circuit, led_rows, true_corners, worst_corner_error  # noqa: E402,I001

from hostctl import plan  # noqa: E402
from hostctl.measurements import MeasurementSet  # noqa: E402

STRATEGIES = ("adaptive", "grid", "random")
SWEEP = 12
LEVEL = -6.0


def adaptive_tones(values: dict[str, float], budget: int) -> list[float]:
    """The tones hostctl's LED planner asks for on this board, in order."""
    tones = plan.log_sweep(min(SWEEP, budget))
    rows = led_rows(tones, values, LEVEL)
    while len(tones) < budget:
        t = plan.next_led_tone(rows, 0.0, place=lambda f: f)
        if t is None or t.frequency_hz in tones:
            break
        tones.append(t.frequency_hz)
        rows += led_rows([t.frequency_hz], values, LEVEL)
    return tones


def tones_for(strategy: str, values: dict[str, float], budget: int,
              rng: np.random.Generator) -> list[float]:
    if strategy == "adaptive":
        return adaptive_tones(values, budget)
    if strategy == "grid":
        return plan.log_sweep(budget)
    lo, hi = plan.BAND
    return [float(f) for f in 10 ** rng.uniform(math.log10(lo), math.log10(hi), budget)]


def run(seeds: int = 20, budgets: tuple[int, ...] = (20, 40, 80)) -> dict:
    from hostctl.fit import fit_many

    circ = circuit()
    t0 = time.perf_counter()
    boards = [bench_like_values(np.random.default_rng([11, s])) for s in range(seeds)]
    jobs, sets = [], []
    for strat in STRATEGIES:
        for b in budgets:
            for s, vals in enumerate(boards):
                rng = np.random.default_rng([12, s, b])
                f = tones_for(strat, vals, b, rng)
                jobs.append((strat, b, s, len(f)))
                sets.append(MeasurementSet(led_rows(f, vals)))
    fits = fit_many(sets, circ)
    out: dict = {"seeds": seeds, "budgets": list(budgets), "boards": "bench E24 values, 5 % R",
                 "results": {}}
    for strat in STRATEGIES:
        out["results"][strat] = {}
        for b in budgets:
            errs, used, closed = [], [], []
            for (st, bb, s, n), r in zip(jobs, fits, strict=True):
                if st != strat or bb != b:
                    continue
                errs.append(worst_corner_error(r.corner_hz, true_corners(boards[s])))
                used.append(n)
                closed.append(all(math.isfinite(r.ci95[k][1]) and r.ci95[k][0] > 0
                                  for k in circ.resistors))
            out["results"][strat][str(b)] = {
                "mean_worst_corner_err": float(np.mean(errs)),
                "median_worst_corner_err": float(np.median(errs)),
                "max_worst_corner_err": float(np.max(errs)),
                "share_within_1pct": float(np.mean(np.array(errs) <= 0.01)),
                "share_all_intervals_closed": float(np.mean(closed)),
                "tones_used_mean": float(np.mean(used)),
            }
    for b in budgets:
        a = out["results"]["adaptive"][str(b)]["mean_worst_corner_err"]
        for strat in ("grid", "random"):
            p = out["results"][strat][str(b)]["mean_worst_corner_err"]
            out["results"]["adaptive"][str(b)][f"ratio_err_vs_{strat}"] = a / max(p, 1e-300)
    out["seconds"] = time.perf_counter() - t0
    return out


def table_rows(res: dict) -> list[tuple]:
    rows = []
    ad = res["results"]["adaptive"]
    for b in res["budgets"]:
        a = ad[str(b)]
        g = res["results"]["grid"][str(b)]
        r = res["results"]["random"][str(b)]
        rows.append(("led", f"{b} tones: adaptive err / grid err", a["ratio_err_vs_grid"], "< 1",
                     a["ratio_err_vs_grid"] < 1,
                     f"adaptive {a['mean_worst_corner_err']:.2%}, grid "
                     f"{g['mean_worst_corner_err']:.2%}"))
        rows.append(("led", f"{b} tones: adaptive err / random err", a["ratio_err_vs_random"],
                     "< 1", a["ratio_err_vs_random"] < 1,
                     f"random {r['mean_worst_corner_err']:.2%} (mean worst corner error, "
                     f"{res['seeds']} seeds)"))
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=20)
    ap.add_argument("--budgets", default="20,40,80")
    args = ap.parse_args(argv)
    res = run(args.seeds, tuple(int(x) for x in args.budgets.split(",")))
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
