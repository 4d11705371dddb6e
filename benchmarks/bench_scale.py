"""Scale: N boards' gain data fitted at once (fit_many) against a loop over fit() and a
loop of scipy ``least_squares`` (LM) fits on the same model.

Each board: the efficiency design (30 log-spaced tones x 3 channels, 1 % log-gain noise),
its own values (bench E24 values, 5 % resistors). Times are wall seconds in this process
(torch on one thread, as fit() uses); both paths must give the same values. The scipy
peer fits each board with the ideal color organ's closed form in numpy and its analytic
Jacobian (what a scipy user writes; the netlist model equals it to 1e-10), from the same
linear start: its time is the optimisation alone, fit_many's the whole job (reading the
rows, covariances, warnings, results).

    python benchmarks/bench_scale.py [--sizes 1,10,100,1000]
    python benchmarks/bench_scale.py --memory 10000     # peak MB above the data's
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_like_values, circuit, gain_set  # noqa: E402

TARGET_1000_S = 10.0


def run(sizes: tuple[int, ...] = (1, 10, 100, 1000), loop_max: int | None = None,
        rounds: int = 0) -> dict:
    """``loop_max``: time the fit() loop on at most this many boards (per-board time is
    then measured on that many), None = all of them; ``rounds``: also time fit_many and
    the scipy loop alternately this many times (process CPU) on the largest size."""
    from hostctl.fit import fit, fit_many

    circ = circuit()
    names = circ.resistors
    freqs = np.geomspace(20.0, 20000.0, 30)
    rng = np.random.default_rng(5)
    n_max = max(sizes)
    data = [gain_set(freqs, bench_like_values(rng), 0.01, rng) for _ in range(n_max)]
    fit(data[0], circ)
    fit_many(data[:2], circ)  # warm-up: first torch calls build their kernels
    out: dict = {"tones_per_board": 30, "rows_per_board": 90, "sizes": {}}
    for n in sizes:
        t0 = time.perf_counter()
        many = fit_many(data[:n], circ)
        t_many = time.perf_counter() - t0
        m = n if loop_max is None else min(n, loop_max)
        t0 = time.perf_counter()
        loop = [fit(d, circ) for d in data[:m]]
        t_loop = time.perf_counter() - t0
        agree = max(abs(a.values[k] / b.values[k] - 1)
                    for a, b in zip(many[:m], loop, strict=True) for k in names)
        out["sizes"][str(n)] = {
            "fit_many_s": t_many, "fit_many_per_board_s": t_many / n,
            "loop_boards_timed": m, "loop_s": t_loop, "loop_per_board_s": t_loop / m,
            "ratio_per_board_many_vs_loop": (t_many / n) / (t_loop / m),
            "max_rel_diff_many_vs_loop": float(agree),
        }
    sc = scipy_loop(data[:n_max], circ)
    out["scipy_loop"] = sc
    if rounds:
        out["interleaved"] = interleaved(data[:n_max], circ, sc["jobs"], rounds)
    del sc["jobs"]
    out["ratio_fit_many_vs_scipy_loop"] = (out["sizes"][str(n_max)]["fit_many_s"]
                                           / sc["seconds"])
    out["max_rel_diff_many_vs_scipy"] = max(
        abs(math.log(a.values[k]) - th[i]) for a, th in zip(many, sc["theta"], strict=True)
        for i, k in enumerate(names))
    del sc["theta"]
    out["target_1000_boards_s"] = TARGET_1000_S
    big = out["sizes"][str(n_max)]
    out["fit_many_1000_measured"] = n_max >= 1000
    # measured when 1000 boards ran, else linear from the largest size (fit_many's per-board
    # time falls with the batch, so this over-estimates)
    out["fit_many_1000_s"] = (out["sizes"]["1000"]["fit_many_s"] if "1000" in out["sizes"]
                              else 1000 * big["fit_many_per_board_s"])
    return out


def closed_form(theta: np.ndarray, w: np.ndarray, ch: np.ndarray, C: float = 1e-6
                ) -> tuple[np.ndarray, np.ndarray]:
    """log|H| of the ideal color organ and d/d log R (analytic), numpy: the model a scipy
    user writes (the notebook's formulas; the netlist equals them to 1e-10)."""
    x = np.exp(theta)[:, None] * C * w                  # (4, n): R_low, R_band_low, ...
    lp, hp = -x * x / (1 + x * x), 1 / (1 + x * x)       # d log|H| / d log R per section
    L = -0.5 * np.log1p(x * x) + np.log(x) * np.array([[0], [0], [1], [1]])
    J = np.zeros((len(w), 4))
    sel = [ch == 0, ch == 1, ch == 1, ch == 2]
    for k, d in enumerate((lp[0], lp[1], hp[2], hp[3])):
        J[sel[k], k] = d[sel[k]]
    out = np.where(ch == 0, L[0], np.where(ch == 1, L[1] + L[2], L[3]))
    return out, J


def scipy_loop(data: list, circ) -> dict:
    """scipy ``least_squares(method="lm")`` per board on the same model (the ideal color
    organ, numpy, analytic Jacobian), started where fit_many starts; the rows and starts
    are read before the clock starts."""

    from hostctl.circuits import LED_THRESHOLD, capacitances
    from hostctl.fit import build_problem, default_start, linear_start

    assert circ.resistors == ("R_low", "R_band_low", "R_band_high", "R_high")
    assert circ.channels == ("low", "band", "high")
    caps = capacitances(circ, 1e-6)
    jobs = []
    for d in data:
        prob = build_problem(d, circ, caps, LED_THRESHOLD, None, None)
        th0 = default_start(prob)
        for k, v in linear_start(prob).items():
            th0[k] = v
        jobs.append((prob.omega.numpy().copy(), prob.ch.numpy().copy(), prob.logg.copy(), th0))

    t0 = time.perf_counter()
    res = scipy_solve(jobs)
    secs = time.perf_counter() - t0
    return {"boards": len(data), "seconds": secs, "per_board_s": secs / len(data),
            "nfev": int(sum(r.nfev for r in res)), "theta": [r.x for r in res],
            "jobs": jobs}


def scipy_solve(jobs: list) -> list:
    """The scipy loop's timed part: one ``least_squares`` (LM) per board."""
    from scipy.optimize import least_squares

    def one(w, ch, lg, th0):
        return least_squares(lambda th: closed_form(th, w, ch)[0] - lg, th0,
                             jac=lambda th: closed_form(th, w, ch)[1], method="lm",
                             xtol=1e-10, ftol=1e-13)
    return [one(*j) for j in jobs]


def interleaved(data: list, circ, jobs: list, rounds: int) -> dict:
    """fit_many on every board and the scipy loop, alternated ``rounds`` times on process
    CPU time: a change of load hits both alike; the ratio is the median of the rounds'."""
    from hostctl.fit import fit_many

    tm, ts = [], []
    for _ in range(rounds):
        t = time.process_time()
        fit_many(data, circ)
        tm.append(time.process_time() - t)
        t = time.process_time()
        scipy_solve(jobs)
        ts.append(time.process_time() - t)
    ratios = [a / b for a, b in zip(tm, ts, strict=True)]
    return {"rounds": rounds, "fit_many_cpu_s": statistics.median(tm),
            "fit_many_cpu_range_s": (min(tm), max(tm)), "scipy_cpu_s": statistics.median(ts),
            "ratio": statistics.median(ratios), "ratio_range": (min(ratios), max(ratios))}


def table_rows(res: dict) -> list[tuple]:
    rows = []
    for n, r in res["sizes"].items():
        rows.append(("scale", f"{n} boards: fit_many / fit() loop, per board",
                     r["ratio_per_board_many_vs_loop"], "< 1" if int(n) >= 10 else "-",
                     r["ratio_per_board_many_vs_loop"] < 1 if int(n) >= 10 else None,
                     f"{1e3 * r['fit_many_per_board_s']:.2f} vs "
                     f"{1e3 * r['loop_per_board_s']:.2f} ms/board; agree "
                     f"{r['max_rel_diff_many_vs_loop']:.0e}"))
    sc = res["scipy_loop"]
    iv = res.get("interleaved")
    ratio = iv["ratio"] if iv else res["ratio_fit_many_vs_scipy_loop"]
    how = (f"median of {iv['rounds']} interleaved rounds, CPU {iv['ratio_range'][0]:.2f}.."
           f"{iv['ratio_range'][1]:.2f}" if iv else f"scipy {sc['seconds']:.2f} s wall")
    rows.append(("scale", f"{sc['boards']} boards: fit_many / scipy LM loop, same model",
                 ratio, "< 1", ratio < 1,
                 f"{how}; values agree {res['max_rel_diff_many_vs_scipy']:.0e}"))
    t = res["fit_many_1000_s"]
    how = "measured" if res["fit_many_1000_measured"] else "extrapolated from the largest batch"
    rows.append(("scale", "1000 boards with fit_many, seconds", t,
                 f"< {res['target_1000_boards_s']:g} s", t < res["target_1000_boards_s"],
                 f"{how}; absolute target (machine dependent)"))
    return rows


def memory_many(n: int) -> dict:
    """Peak resident memory of ``fit_many`` on ``n`` boards above the process's resident
    memory with the boards' data already read (Linux: the peak is reset through
    /proc/self/clear_refs first). Run in a fresh process for a clean number."""
    from hostctl.fit import fit_many

    circ = circuit()
    freqs = np.geomspace(20.0, 20000.0, 30)
    rng = np.random.default_rng(5)
    data = [gain_set(freqs, bench_like_values(rng), 0.01, rng) for _ in range(n)]
    fit_many(data[:2], circ)

    def status(key: str) -> float:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return float(line.split()[1]) / 1024   # kB -> MB
        return math.nan

    Path("/proc/self/clear_refs").write_text("5")   # VmHWM := VmRSS
    base = status("VmRSS")
    t0 = time.perf_counter()
    fit_many(data, circ)
    secs = time.perf_counter() - t0
    return {"boards": n, "seconds": secs, "baseline_mb": base,
            "peak_above_baseline_mb": status("VmHWM") - base}


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,10,100,1000")
    ap.add_argument("--rounds", type=int, default=7,
                    help="interleaved fit_many / scipy rounds on the largest size (CPU)")
    ap.add_argument("--memory", type=int, default=None,
                    help="instead: fit_many's peak memory on this many boards (MB)")
    args = ap.parse_args(argv)
    if args.memory:
        res = memory_many(args.memory)
        print(json.dumps(res, indent=2))
        return res
    res = run(tuple(int(x) for x in args.sizes.split(",")), rounds=args.rounds)
    print(json.dumps(res, indent=2))
    n = max(int(k) for k in res["sizes"])
    print(f"fit_many {n} boards: {res['sizes'][str(n)]['fit_many_s']:.2f} s; scipy LM loop "
          f"{res['scipy_loop']['seconds']:.2f} s; fit_many / scipy = "
          f"{res['ratio_fit_many_vs_scipy_loop']:.2f} (one wall-clock run each)")
    if args.rounds:
        iv = res["interleaved"]
        print(f"interleaved, {iv['rounds']} rounds, process CPU: fit_many "
              f"{iv['fit_many_cpu_s']:.3f} s (range {iv['fit_many_cpu_range_s'][0]:.3f}.."
              f"{iv['fit_many_cpu_range_s'][1]:.3f}), scipy loop {iv['scipy_cpu_s']:.3f} s; "
              f"fit_many / scipy = {iv['ratio']:.2f} (rounds {iv['ratio_range'][0]:.2f}.."
              f"{iv['ratio_range'][1]:.2f})")
    return res


if __name__ == "__main__":
    main()
