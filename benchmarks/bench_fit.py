"""Benchmark the fit engine on the course notebook's data (1000 tones, color organ).

Times, in the same run (several repeats, median):
  * hostctl.fit.fit on gain data (end to end from a MeasurementSet, and the solver alone),
  * the same gain fit by scipy.optimize.least_squares(method="lm") with a numpy model
    (log-parameters, log-error residuals, the same starting point),
  * hostctl.fit.fit on LED data,
  * fit_many on many boards (gain data),
  * `hostctl fit` as a whole process (wall time, includes Python + torch import).

    python benchmarks/bench_fit.py [--repeats 15] [--boards 1000] \
        [--json benchmarks/results/fit.json]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from common import median_seconds

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "examples"))

from make_notebook_data import notebook_sets  # noqa: E402

from hostctl import fit as fitmod  # noqa: E402
from hostctl.circuits import (  # noqa: E402
    LED_THRESHOLD,  # noqa: E402
    NOTEBOOK_VALUES,
    get_circuit,
)
from hostctl.dataset import Measurement, MeasurementSet  # noqa: E402
from hostctl.fit import build_problem, levenberg_marquardt, linear_start  # noqa: E402

#: the course notebook's circuit: ideal sections, the model ``numpy_color_organ`` computes,
#: so scipy and hostctl fit the same model on the same rows
NOTEBOOK_CIRCUIT = "color-organ-ideal"


def numpy_color_organ(theta: np.ndarray, f: np.ndarray, ch: np.ndarray, C: float = 1e-6
                      ) -> np.ndarray:
    """log|H| of the color organ, numpy, theta = log(R_low, R_band_low, R_band_high, R_high)."""
    r = np.exp(theta)
    w = 2 * np.pi * f
    x0, x1, x2, x3 = (r[i] * C * w for i in range(4))
    lo = -0.5 * np.log1p(x0 * x0)
    band = -0.5 * np.log1p(x1 * x1) + np.log(x2) - 0.5 * np.log1p(x2 * x2)
    hi = np.log(x3) - 0.5 * np.log1p(x3 * x3)
    return np.where(ch == 0, lo, np.where(ch == 1, band, hi))


def noisy_copy(ms: MeasurementSet, sigma: float, seed: int) -> MeasurementSet:
    """The same rows with multiplicative log-normal gain noise (log-gain sd ``sigma``)."""
    rng = np.random.default_rng(seed)
    rows = [Measurement(m.frequency_hz, m.channel, gain=float(m.gain * math.exp(sigma * z)))
            for m, z in zip(ms.rows, rng.normal(0.0, 1.0, len(ms.rows)), strict=True)]
    return MeasurementSet(rows, dict(ms.meta))


def peer_compare(gain: MeasurementSet, truth: dict[str, float], *, repeats: int = 5,
                 gd_runs: tuple[tuple[float, int], ...] = ((1e5, 100_000), (200.0, 20_000)),
                 far: float = 1.5) -> dict:
    """hostctl fit vs scipy least_squares (LM, numpy model) vs the notebook's gradient
    descent, on the *same* gain rows in the same process: time, iterations, error.

    Error = max over resistors of |fitted / truth - 1|. scipy gets the same data prep and
    the same linear start as hostctl (``scipy_lm``), and both are also run from a start
    ``far`` x the truth on every resistor (``*_far``: both have to iterate). The notebook's
    descent (``hostctl.fit(loss="notebook-mse")``: plain gradient descent on R in ohms, MSE
    on linear gain, fixed learning rate, stop when loss < 1e-6 or |grad| < 1e-6 or after
    ``steps``) starts at 500 ohm, as the course does; one entry per (lr, max steps).
    """
    from scipy.optimize import least_squares

    # the notebook's own model (ideal sections, no probe): the one numpy_color_organ is
    circ = get_circuit(NOTEBOOK_CIRCUIT)
    names = list(circ.resistors)
    tv = np.array([truth[r] for r in names])

    def err(v: np.ndarray) -> float:
        return float(np.abs(v / tv - 1).max())

    out: dict = {"rows": len(gain)}
    t, r = median_seconds(lambda: fitmod.fit(gain, circ), repeats)
    out["hostctl"] = {"seconds": t, "iterations": r.iterations,
                      "max_rel_err": err(np.array([r.values[k] for k in names]))}
    init = {k: far * truth[k] for k in names}
    t, r = median_seconds(lambda: fitmod.fit(gain, circ, init=init), repeats)
    out["hostctl_far"] = {"seconds": t, "iterations": r.iterations,
                          "max_rel_err": err(np.array([r.values[k] for k in names]))}
    caps = {k: 1e-6 for k in names}

    def scipy_fit(x_start: np.ndarray | None = None):
        p = build_problem(gain, circ, caps, LED_THRESHOLD, None, None)
        x0 = (np.array([linear_start(p)[k] for k in range(4)])
              if x_start is None else x_start)
        return least_squares(lambda th: numpy_color_organ(th, p.freq_g, p.chg) - p.logg, x0,
                             method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)

    t, s = median_seconds(scipy_fit, repeats)
    out["scipy_lm"] = {"seconds": t, "iterations": int(s.nfev), "max_rel_err": err(np.exp(s.x))}
    x_far = np.log(tv * far)
    t, s = median_seconds(lambda: scipy_fit(x_far), repeats)
    out["scipy_lm_far"] = {"seconds": t, "iterations": int(s.nfev),
                           "max_rel_err": err(np.exp(s.x))}
    out["notebook_gd"] = []
    for lr, steps in gd_runs:
        t0 = time.perf_counter()
        r = fitmod.fit(gain, circ, loss="notebook-mse", init=500.0, lr=lr, steps=steps)
        out["notebook_gd"].append({"lr": lr, "max_steps": steps,
                                   "seconds": time.perf_counter() - t0,
                                   "iterations": r.iterations, "converged": r.converged,
                                   "max_rel_err": err(np.array([r.values[k] for k in names]))})
    h, sc = out["hostctl"], out["scipy_lm"]
    out["ratio_time_vs_scipy"] = h["seconds"] / sc["seconds"]
    out["ratio_time_vs_scipy_far"] = out["hostctl_far"]["seconds"] / out["scipy_lm_far"]["seconds"]
    out["ratio_err_vs_scipy"] = h["max_rel_err"] / max(sc["max_rel_err"], 1e-300)
    for g in out["notebook_gd"]:
        g["ratio_time_hostctl_vs_gd"] = h["seconds"] / g["seconds"]
        g["ratio_err_hostctl_vs_gd"] = h["max_rel_err"] / max(g["max_rel_err"], 1e-300)
    return out


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--boards", type=int, default=1000)
    ap.add_argument("--json", dest="json_path", default=None,
                    help="write results here (e.g. benchmarks/results/fit.json)")
    args = ap.parse_args(argv)
    from scipy.optimize import least_squares

    circ = get_circuit(NOTEBOOK_CIRCUIT)
    gain, led = notebook_sets(NOTEBOOK_CIRCUIT)
    truth = np.array([NOTEBOOK_VALUES[r] for r in circ.resistors])
    res: dict = {"python": platform.python_version(), "machine": platform.machine(),
                 "n_rows_gain": len(gain), "n_rows_led": len(led), "repeats": args.repeats}

    # --- hostctl gain fit, end to end ---------------------------------------------
    t_fit, r_fit = median_seconds(lambda: fitmod.fit(gain, circ), args.repeats)
    v_fit = np.array([r_fit.values[r] for r in circ.resistors])

    # --- the solver alone on prepared arrays (same work scipy is timed for) ---------
    caps = {r: 1e-6 for r in circ.resistors}
    prob = build_problem(gain, circ, caps, LED_THRESHOLD, None, None)
    th0 = np.array([linear_start(prob)[k] for k in range(4)])

    import torch

    torch.set_num_threads(1)  # as fit() does; threads only cost on problems this small

    def solver_only(x0=th0):
        return levenberg_marquardt(lambda th: prob.objective(th), x0[None])

    t_solver, out = median_seconds(solver_only, args.repeats)
    # a start 50% off on every resistor: both solvers have to iterate
    th_far = th0 + math.log(1.5)
    t_solver_far, out_far = median_seconds(lambda: solver_only(th_far), args.repeats)

    # --- scipy LM, numpy model, same start, same residual --------------------------
    f = prob.freq_g
    ch = prob.chg
    logg = prob.logg

    def scipy_fit():
        return least_squares(lambda th: numpy_color_organ(th, f, ch) - logg, th0, method="lm",
                             xtol=1e-15, ftol=1e-15, gtol=1e-15)

    t_scipy, s = median_seconds(scipy_fit, args.repeats)
    v_scipy = np.exp(s.x)

    def scipy_far():
        return least_squares(lambda th: numpy_color_organ(th, f, ch) - logg, th_far,
                             method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)

    t_scipy_far, s_far = median_seconds(scipy_far, args.repeats)

    def scipy_with_start():
        p = build_problem(gain, circ, caps, LED_THRESHOLD, None, None)
        x0 = np.array([linear_start(p)[k] for k in range(4)])
        return least_squares(lambda th: numpy_color_organ(th, p.freq_g, p.chg) - p.logg, x0,
                             method="lm", xtol=1e-15, ftol=1e-15, gtol=1e-15)

    t_scipy_full, _ = median_seconds(scipy_with_start, args.repeats)
    res["gain"] = {
        "hostctl_fit_s": t_fit, "hostctl_solver_s": t_solver, "scipy_lm_s": t_scipy,
        "scipy_lm_with_data_prep_and_start_s": t_scipy_full,
        "ratio_fit_vs_scipy_same_prep": t_fit / t_scipy_full,
        "ratio_solver_vs_scipy": t_solver / t_scipy,
        "max_rel_err_hostctl": float(np.abs(v_fit / truth - 1).max()),
        "max_rel_err_scipy": float(np.abs(v_scipy / truth - 1).max()),
        "agree_rel": float(np.abs(v_fit / v_scipy - 1).max()),
        "iterations": r_fit.iterations, "scipy_nfev": int(s.nfev),
        "far_start": {"hostctl_solver_s": t_solver_far, "scipy_lm_s": t_scipy_far,
                      "ratio": t_solver_far / t_scipy_far, "hostctl_iterations": int(out_far[-1]),
                      "scipy_nfev": int(s_far.nfev),
                      "agree_rel": float(np.abs(np.exp(out_far[0][0] - s_far.x) - 1).max())},
    }

    # --- LED fit ----------------------------------------------------------------------
    t_led, r_led = median_seconds(lambda: fitmod.fit(led, circ), max(3, args.repeats // 3))
    res["led"] = {
        "hostctl_fit_s": t_led,
        "values": r_led.values, "ci95": {k: list(v) for k, v in r_led.ci95.items()},
        "truth_inside": all(r_led.ci95[r][0] <= NOTEBOOK_VALUES[r] <= r_led.ci95[r][1]
                            for r in circ.resistors),
    }

    # --- many boards ------------------------------------------------------------------
    rng = np.random.default_rng(1)
    f300 = 10 ** rng.uniform(1, 5, 100)
    boards = []
    for _ in range(args.boards):
        vals = {r: NOTEBOOK_VALUES[r] * math.exp(rng.normal(0, 0.05)) for r in circ.resistors}
        H = {k: v.numpy() for k, v in circ.response(f300, vals).items()}
        noise = np.exp(rng.normal(0, 0.01, (3, len(f300))))
        ms = MeasurementSet([Measurement(float(fi), c, gain=float(H[c][i] * noise[j, i]))
                             for j, c in enumerate(circ.channels) for i, fi in enumerate(f300)])
        boards.append((ms, vals))
    t = time.perf_counter()
    many = fitmod.fit_many([b[0] for b in boards], circ)
    t_many = time.perf_counter() - t
    cover = np.mean([[m.ci95[r][0] <= b[1][r] <= m.ci95[r][1] for r in circ.resistors]
                     for m, b in zip(many, boards, strict=True)])
    res["fit_many"] = {"boards": args.boards, "tones_per_channel": len(f300), "seconds": t_many,
                       "ci95_coverage": float(cover)}
    led_boards = []
    for _ in range(args.boards):
        vals = {r: NOTEBOOK_VALUES[r] * math.exp(rng.normal(0, 0.1)) for r in circ.resistors}
        f = 10 ** rng.uniform(1, 5, 100)
        H = {k: v.numpy() for k, v in circ.response(f, vals).items()}
        ms = MeasurementSet([Measurement(float(fi), c, led=int(H[c][i] > LED_THRESHOLD))
                             for c in circ.channels for i, fi in enumerate(f)])
        led_boards.append((ms, vals))
    t = time.perf_counter()
    many = fitmod.fit_many([b[0] for b in led_boards], circ)
    t_many_led = time.perf_counter() - t
    inside = np.mean([[m.ci95[r][0] <= b[1][r] <= m.ci95[r][1] for r in circ.resistors]
                      for m, b in zip(many, led_boards, strict=True)])
    res["fit_many_led"] = {"boards": args.boards, "tones_per_channel": 100,
                           "seconds": t_many_led, "truth_inside_interval": float(inside)}

    # --- whole process ------------------------------------------------------------------
    with tempfile.TemporaryDirectory() as td:
        p = Path(td) / "gain.csv"
        gain.write_csv(p)
        ts = []
        for _ in range(3):
            t = time.perf_counter()
            cp = subprocess.run([sys.executable, "-m", "hostctl", "fit", str(p), "--circuit",
                                 "color-organ", "--json"], capture_output=True, text=True)
            ts.append(time.perf_counter() - t)
        ok = cp.returncode == 0 and json.loads(cp.stdout)["fit"]["converged"]
    res["cli"] = {"hostctl_fit_process_wall_s": statistics.median(ts), "ok": bool(ok)}

    g = res["gain"]
    print(f"gain fit, color organ, {len(gain)} rows (median of {args.repeats}):")
    print(f"  hostctl fit()            {1e3 * g['hostctl_fit_s']:8.2f} ms  "
          f"({g['iterations']} LM iterations, max rel err {g['max_rel_err_hostctl']:.1e})")
    print(f"  scipy lm + same prep     {1e3 * g['scipy_lm_with_data_prep_and_start_s']:8.2f} ms"
          f"  -> ratio {g['ratio_fit_vs_scipy_same_prep']:.2f}")
    print(f"  hostctl solver only      {1e3 * g['hostctl_solver_s']:8.2f} ms")
    print(f"  scipy lm (numpy model)   {1e3 * g['scipy_lm_s']:8.2f} ms  ({g['scipy_nfev']} nfev,"
          f" max rel err {g['max_rel_err_scipy']:.1e}) -> ratio {g['ratio_solver_vs_scipy']:.2f}")
    print(f"  answers agree to         {g['agree_rel']:.1e} (relative)")
    fs = g["far_start"]
    print(f"  start 50% off: solver {1e3 * fs['hostctl_solver_s']:.2f} ms "
          f"({fs['hostctl_iterations']} it) vs scipy {1e3 * fs['scipy_lm_s']:.2f} ms "
          f"({fs['scipy_nfev']} nfev) -> ratio {fs['ratio']:.2f}; agree {fs['agree_rel']:.1e}")
    print(f"LED fit, color organ:      {1e3 * res['led']['hostctl_fit_s']:8.2f} ms  "
          f"truth inside every interval: {res['led']['truth_inside']}")
    fm = res["fit_many"]
    print(f"fit_many: {fm['boards']} boards x {3 * fm['tones_per_channel']} rows in "
          f"{fm['seconds']:.2f} s (95% interval coverage {fm['ci95_coverage']:.3f})")
    fl = res["fit_many_led"]
    print(f"fit_many LED: {fl['boards']} boards x 300 rows in {fl['seconds']:.2f} s "
          f"(truth inside the interval: {fl['truth_inside_interval']:.3f})")
    print(f"`hostctl fit --json` process wall time: {res['cli']['hostctl_fit_process_wall_s']:.2f}"
          f" s (ok={res['cli']['ok']})")
    if args.json_path:
        out = Path(args.json_path)
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(res, indent=2) + "\n")
        print(f"wrote {out}")
    return res


if __name__ == "__main__":
    main()
