"""Statistical efficiency of the gain fit against the Cramer-Rao bound.

A fixed tone design (30 log-spaced tones 20 Hz..20 kHz, all three channels) at the notebook
values; each trial multiplies every gain by exp(0.01 * N(0, 1)), so the log-gain noise is
exactly sigma = 0.01. In log R the Fisher information is J^T J / sigma^2 with J = d log|H| /
d log R (analytic below, checked against torch autograd); the bound on each log R is
sqrt(diag((J^T J)^-1)) * sigma. Reported per resistor: RMSE of log R_hat over the trials /
the bound (target <= 1.1) and how often fit()'s 95 % interval covers the truth (93-97 %).

    python benchmarks/bench_efficiency.py [--trials 2000]
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

from common import circuit, gain_set  # noqa: E402

from hostctl.circuits import NOTEBOOK_VALUES  # noqa: E402

SIGMA = 0.01
N_TONES = 30
BAND = (20.0, 20000.0)


def jacobian_analytic(freqs: np.ndarray, values: dict[str, float], cap: float = 1e-6
                      ) -> np.ndarray:
    """d log|H| / d log R, rows = (low tones, band tones, high tones), columns = resistors.

    Low-pass section: log|H| = -0.5 log(1 + x^2), x = R C omega -> d/dlog R = -x^2/(1+x^2).
    High-pass section: log x - 0.5 log(1 + x^2) -> 1/(1+x^2). The band-pass is the sum of a
    low-pass (R_band_low) and a high-pass (R_band_high) section.
    """
    w = 2 * math.pi * np.asarray(freqs, dtype=float)
    names = circuit().resistors
    x = {k: values[k] * cap * w for k in names}
    z = np.zeros_like(w)

    def lp(k: str) -> np.ndarray:
        return -x[k] ** 2 / (1 + x[k] ** 2)

    def hp(k: str) -> np.ndarray:
        return 1 / (1 + x[k] ** 2)

    low = np.stack([lp("R_low"), z, z, z], 1)
    band = np.stack([z, lp("R_band_low"), hp("R_band_high"), z], 1)
    high = np.stack([z, z, z, hp("R_high")], 1)
    cols = [names.index(k) for k in ("R_low", "R_band_low", "R_band_high", "R_high")]
    J = np.concatenate([low, band, high], 0)
    out = np.zeros_like(J)
    out[:, cols] = J
    return out


def jacobian_autograd(freqs: np.ndarray, values: dict[str, float], cap: float = 1e-6
                      ) -> np.ndarray:
    """The same Jacobian from torch.autograd.functional.jacobian on the hostctl model."""
    import torch

    circ = circuit()
    names = circ.resistors
    omega = torch.as_tensor(2 * math.pi * np.asarray(freqs, dtype=float))
    ct = {k: torch.tensor(cap, dtype=torch.float64) for k in names}

    def f(th: torch.Tensor) -> torch.Tensor:
        out = circ.model(omega, {k: th[i].exp() for i, k in enumerate(names)}, ct)
        return torch.cat([torch.broadcast_to(out[c], omega.shape).log() for c in circ.channels])

    th = torch.tensor([math.log(values[k]) for k in names], dtype=torch.float64)
    return torch.autograd.functional.jacobian(f, th).numpy()


def run(trials: int = 2000, seed: int = 7) -> dict:
    from hostctl.fit import fit_many

    circ = circuit()
    names = list(circ.resistors)
    truth = {k: NOTEBOOK_VALUES[k] for k in names}
    freqs = np.geomspace(*BAND, N_TONES)
    J = jacobian_analytic(freqs, truth)
    J_ag = jacobian_autograd(freqs, truth)
    crb = SIGMA * np.sqrt(np.diag(np.linalg.inv(J.T @ J)))
    rng = np.random.default_rng(seed)
    data = [gain_set(freqs, truth, SIGMA, rng) for _ in range(trials)]
    t0 = time.perf_counter()
    fits = fit_many(data, circ)
    secs = time.perf_counter() - t0
    th = np.log([[r.values[k] for k in names] for r in fits])
    th_true = np.log([truth[k] for k in names])
    e = th - th_true
    rmse = np.sqrt((e ** 2).mean(0))
    cover = np.mean([[r.ci95[k][0] <= truth[k] <= r.ci95[k][1] for k in names] for r in fits], 0)
    # binomial sd of a coverage fraction near 95 %, for reading the numbers
    cover_sd = math.sqrt(0.95 * 0.05 / trials)
    per = {}
    for i, k in enumerate(names):
        per[k] = {"crb_log": float(crb[i]), "rmse_log": float(rmse[i]),
                  "bias_log": float(e[:, i].mean()), "ratio_rmse_vs_crb": float(rmse[i] / crb[i]),
                  "ci95_coverage": float(cover[i])}
    return {
        "design": f"{N_TONES} log-spaced tones {BAND[0]:g}-{BAND[1]:g} Hz x 3 channels, "
                  f"notebook values, log-gain noise sd {SIGMA}",
        "trials": trials, "sigma_log_gain": SIGMA, "fit_many_seconds": secs,
        "jacobian_analytic_vs_autograd_max_abs": float(np.abs(J - J_ag).max()),
        "converged_fraction": float(np.mean([r.converged for r in fits])),
        "per_resistor": per,
        "worst_ratio_rmse_vs_crb": float(max(p["ratio_rmse_vs_crb"] for p in per.values())),
        "coverage_min": float(cover.min()), "coverage_max": float(cover.max()),
        "coverage_binomial_sd": cover_sd,
    }


def table_rows(res: dict) -> list[tuple]:
    rows = []
    for k, p in res["per_resistor"].items():
        rows.append(("efficiency", f"{k}: RMSE(log R) / CRB", p["ratio_rmse_vs_crb"],
                     "<= 1.1", p["ratio_rmse_vs_crb"] <= 1.1,
                     f"rmse {p['rmse_log']:.2e} vs bound {p['crb_log']:.2e}"))
        rows.append(("efficiency", f"{k}: 95% interval coverage", p["ci95_coverage"],
                     "0.93-0.97", 0.93 <= p["ci95_coverage"] <= 0.97,
                     f"{res['trials']} trials (sd {res['coverage_binomial_sd']:.3f})"))
    return rows


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=2000)
    args = ap.parse_args(argv)
    res = run(args.trials)
    print(json.dumps(res, indent=2))
    return res


if __name__ == "__main__":
    main()
