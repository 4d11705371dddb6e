"""Scale: N boards' gain data fitted at once (fit_many) against a loop over fit().

Each board: the efficiency design (30 log-spaced tones x 3 channels, 1 % log-gain noise),
its own values (bench E24 values, 5 % resistors). Times are wall seconds in this process
(torch on one thread, as fit() uses); both paths must give the same values.

    python benchmarks/bench_scale.py [--sizes 1,10,100,1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import bench_like_values, circuit, gain_set  # noqa: E402

TARGET_1000_S = 10.0


def run(sizes: tuple[int, ...] = (1, 10, 100, 1000), loop_max: int | None = None) -> dict:
    """``loop_max``: time the fit() loop on at most this many boards (per-board time is
    then measured on that many), None = all of them."""
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
    out["target_1000_boards_s"] = TARGET_1000_S
    big = out["sizes"][str(n_max)]
    out["fit_many_1000_measured"] = n_max >= 1000
    # measured when 1000 boards ran, else linear from the largest size (fit_many's per-board
    # time falls with the batch, so this over-estimates)
    out["fit_many_1000_s"] = (out["sizes"]["1000"]["fit_many_s"] if "1000" in out["sizes"]
                              else 1000 * big["fit_many_per_board_s"])
    return out


def table_rows(res: dict) -> list[tuple]:
    rows = []
    for n, r in res["sizes"].items():
        rows.append(("scale", f"{n} boards: fit_many / fit() loop, per board",
                     r["ratio_per_board_many_vs_loop"], "< 1" if int(n) >= 10 else "-",
                     r["ratio_per_board_many_vs_loop"] < 1 if int(n) >= 10 else None,
                     f"{1e3 * r['fit_many_per_board_s']:.2f} vs "
                     f"{1e3 * r['loop_per_board_s']:.2f} ms/board; agree "
                     f"{r['max_rel_diff_many_vs_loop']:.0e}"))
    t = res["fit_many_1000_s"]
    how = "measured" if res["fit_many_1000_measured"] else "extrapolated from the largest batch"
    rows.append(("scale", "1000 boards with fit_many, seconds", t,
                 f"< {res['target_1000_boards_s']:g} s", t < res["target_1000_boards_s"],
                 f"{how}; absolute target (machine dependent)"))
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1,10,100,1000")
    args = ap.parse_args(argv)
    res = run(tuple(int(x) for x in args.sizes.split(",")))
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
