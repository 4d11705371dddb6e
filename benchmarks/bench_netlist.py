"""The nodal solver's cost in the fit, and the whole fit against scipy on the same model.

1. log|H| and its Jacobian for S starts x n rows: the fit's gain model (``_Model.logh``:
   the netlist's straight-line numpy program and its adjoint) on the netlist presets
   against the notebook's closed form of the same ideal circuit; the median of 30.
2. ``hostctl.fit.fit`` of a preset (resistors and the film-ESR nuisances under their
   priors) against ``scipy.optimize.least_squares(method="lm")`` on the SAME netlist model
   and rows (residuals from the Circuit's numpy path, ``Circuit.magnitude``; the priors as
   extra residuals; the same start), with scipy's own finite-difference Jacobian and with
   the model's analytic one. hostctl's time is its whole fit (problem, LM, noise scale,
   intervals, result); scipy's only the optimisation. 100 tones x 3 channels, 1 % noise,
   and (issue 18) the default preset on 1000 exact (noise-free) tones x 3 channels.

Process CPU time (one thread), so a loaded box inflates it less than wall time.

    python benchmarks/bench_netlist.py [--rows 1000] [--starts 4] [--tones 100]
                                       [--whole-tones 1000] [--exact-tones 1000]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from collections.abc import Callable

import numpy as np
from common import median_seconds

PEERS = ("color-organ", "color-organ-passive")


def _cpu(fn, repeats: int) -> tuple[float, object]:
    """Median process CPU seconds of ``fn`` (after one warm-up call) and its result."""
    return median_seconds(fn, repeats, time.process_time)


def noisy_tones(name: str, tones: int = 100, noise: float = 0.01, seed: int = 0,
                rows: bool = False):
    """The preset's own response at the notebook's values (film ESR at nominal), every tone
    on every channel, with log-normal gain noise: a MeasurementSet held as columns (as a
    CSV is read), or with ``rows`` as a list of Measurement objects (as a bench appends)."""
    from hostctl.circuits import NOTEBOOK_VALUES, get_circuit
    from hostctl.dataset import Measurement, MeasurementSet

    circ = get_circuit(name)
    f = np.geomspace(20, 20000, tones)
    vals = {**{r: NOTEBOOK_VALUES[r] for r in circ.resistors},
            **{k: n.nominal for k, n in circ.nuisance.items()}}
    H = circ.magnitude(f, vals)
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(tones, len(circ.channels)))   # the same draws, row by row
    gain = np.stack([H[c] for c in circ.channels], -1) * np.exp(noise * z)
    freq = np.repeat(f, len(circ.channels))
    chans = list(circ.channels) * tones
    if rows:
        return MeasurementSet([Measurement(float(fk), ch, gain=float(g)) for fk, ch, g
                               in zip(freq, chans, gain.ravel(), strict=True)], {})
    return MeasurementSet.from_columns(freq, chans, gain=gain.ravel())


def _interleaved(fns: dict[str, Callable[[], object]], repeats: int
                 ) -> tuple[dict[str, list[float]], dict[str, object]]:
    """Process CPU seconds of each ``fn``, the calls interleaved (A B C A B C ...) after
    one warm-up each: a change of load hits every contender alike."""
    out = {k: fn() for k, fn in fns.items()}
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(repeats):
        for k, fn in fns.items():
            t = time.process_time()
            out[k] = fn()
            ts[k].append(time.process_time() - t)
    return ts, out


def peer_ratio(name: str, tones: int = 100, noise: float = 0.01, repeats: int = 15) -> dict:
    """hostctl fit / scipy least_squares (LM) on the same netlist model and rows; each
    ratio is the median of the per-round ratios (rounds interleaved), with their range."""
    from scipy.optimize import least_squares

    from hostctl.circuits import LED_THRESHOLD, get_circuit
    from hostctl.fit import build_problem, default_start, fit, linear_start
    from hostctl.fit.problem import nuisances
    from hostctl.fit.settings import S_GAIN_FLOOR

    circ = get_circuit(name)
    ms = noisy_tones(name, tones, noise)
    ms_rows = noisy_tones(name, tones, noise, rows=True)
    caps = {r: 1e-6 for r in circ.resistors}
    prob = build_problem(ms, circ, caps, LED_THRESHOLD, None, None)
    free = list(prob.free)
    th0 = default_start(prob)
    for k, v in linear_start(prob).items():
        th0[k] = v
    nu = nuisances(circ)
    pk = [free.index(k) for k in nu]
    mu = np.log([nu[k][0] for k in nu])
    sig = np.array([nu[k][1] for k in nu])
    f, chn, logg = prob.freq_g, prob.chg, prob.logg
    rows = np.arange(len(f))

    def resid(th, s=1.0):
        H = circ.magnitude(f, dict(zip(free, np.exp(th), strict=True)), caps)
        L = np.log(np.stack([H[c] for c in circ.channels], -1)[rows, chn])
        return np.concatenate([(L - logg) / s, (th[pk] - mu) / sig])

    def jac(th, s=1.0):
        _, J = prob.model.logh(th[None], prob.omega, prob.ch)
        P = np.zeros((len(pk), len(free)))
        P[np.arange(len(pk)), pk] = 1.0 / sig
        return np.concatenate([J[0] / s, P])

    r = fit(ms, circ)

    def scipy_fit(j):
        """hostctl's estimator: a pilot with the nuisances' priors measures the noise,
        then the MAP with the gains at that noise (the same residual dof, and the same
        1 ppm floor: exact tones leave only rounding in the residuals)."""
        kw = {"method": "lm", "xtol": 1e-10, "ftol": 1e-13}
        a = least_squares(resid, th0, jac=j, **kw)
        s = max(math.sqrt(float(a.fun @ a.fun) / r.dof), S_GAIN_FLOOR)
        b = least_squares(resid, a.x, jac=j, args=(s,), **kw)
        return b, a.nfev + b.nfev, (a.njev or 0) + (b.njev or 0)

    ts, res = _interleaved({"hostctl": lambda: fit(ms, circ),
                            "hostctl_rows": lambda: fit(ms_rows, circ),
                            "scipy_lm_fd": lambda: scipy_fit("2-point"),
                            "scipy_lm_analytic": lambda: scipy_fit(jac)}, repeats)
    r = res["hostctl"]
    out: dict = {"circuit": name, "tones": tones, "rows": len(f), "noise": noise,
                 "parameters": len(free), "repeats": repeats,
                 "hostctl": {"seconds": statistics.median(ts["hostctl"]),
                             "iterations": r.iterations},
                 "hostctl_rows": {"seconds": statistics.median(ts["hostctl_rows"])}}
    same = max(abs(r.values[k] / res["hostctl_rows"].values[k] - 1) for k in circ.resistors)
    out["hostctl_rows"]["max_rel_diff_R_vs_columns"] = same
    for key in ("scipy_lm_fd", "scipy_lm_analytic"):
        sres, nfev, njev = res[key]
        dev = max(abs(math.log(r.values[k]) - sres.x[free.index(k)]) for k in circ.resistors)
        out[key] = {"seconds": statistics.median(ts[key]), "nfev": int(nfev),
                    "njev": int(njev), "max_rel_diff_R_vs_hostctl": dev}
        for who in ("hostctl", "hostctl_rows"):
            ratios = [a / b for a, b in zip(ts[who], ts[key], strict=True)]
            suffix = "" if who == "hostctl" else "_rows"
            out[f"ratio_{key}{suffix}"] = statistics.median(ratios)
            out[f"ratio_{key}{suffix}_range"] = (min(ratios), max(ratios))
    return out


def print_peer(r: dict) -> None:
    h, hr = r["hostctl"], r["hostctl_rows"]
    print(f"  {r['circuit']:22s} hostctl {1e3 * h['seconds']:7.1f} ms ({h['iterations']} it) "
          f"from columns; {1e3 * hr['seconds']:.1f} ms from Measurement objects (R differ "
          f"by {hr['max_rel_diff_R_vs_columns']:.1e})")
    for key, label in (("scipy_lm_fd", "finite-diff J"), ("scipy_lm_analytic", "analytic J")):
        s = r[key]
        lo, hi = r[f"ratio_{key}_range"]
        print(f"  {'':22s} scipy LM, {label:13s} {1e3 * s['seconds']:7.1f} ms "
              f"({s['nfev']} fev, {s['njev']} jev): hostctl / scipy = {r['ratio_' + key]:.2f}"
              f" [{lo:.2f}..{hi:.2f}; from objects {r['ratio_' + key + '_rows']:.2f}]"
              f"  (R differ by {s['max_rel_diff_R_vs_hostctl']:.1e})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--starts", type=int, default=4)
    ap.add_argument("--tones", type=int, default=100)
    ap.add_argument("--repeats", type=int, default=15)
    ap.add_argument("--whole-tones", type=int, default=1000,
                    help="tones of the whole-fit comparison (issue 12's yardstick: 1000)")
    ap.add_argument("--exact-tones", type=int, default=1000,
                    help="noise-free tones of the color-organ vs scipy comparison "
                         "(issue 18: 1000; 0 skips it)")
    a = ap.parse_args()
    import torch

    from hostctl.circuits import NOTEBOOK_VALUES, capacitances, circuit, get_circuit
    from hostctl.circuits.closed_forms import color_organ
    from hostctl.fit import shared_model

    torch.set_num_threads(1)
    ideal = get_circuit("color-organ-ideal")
    circuit("closed-form", ideal.resistors, ideal.channels, ideal.sections)(color_organ)
    n, S = a.rows, a.starts
    omega = torch.from_numpy(2 * math.pi * np.geomspace(20, 20000, n))
    ch = torch.from_numpy(np.arange(n) % 3)
    rng = np.random.default_rng(0)
    print(f"log|H| + Jacobian, {n} rows x {S} starts (process CPU, median of 30)")
    for name in ("closed-form", "color-organ-ideal", "color-organ", "color-organ-passive"):
        circ = get_circuit(name)
        m = shared_model(circ, capacitances(circ, 1e-6), list(circ.resistors), {})
        th = (np.log([[NOTEBOOK_VALUES[r] for r in circ.resistors]] * S)
              + rng.normal(0, 0.1, (S, len(circ.resistors))))
        m.logh(th, omega, ch)
        ts = []
        for i in range(30):
            # a new point each time: one start's last evaluations are remembered (the
            # fit asks again at its end), which --starts 1 would time instead (0.00 ms)
            thi = th + 1e-9 * (i + 1)
            t = time.process_time()
            m.logh(thi, omega, ch)
            ts.append(time.process_time() - t)
        print(f"  {name:22s} {1e3 * float(np.median(ts)):7.2f} ms")
    print(f"hostctl fit / scipy least_squares (LM), same netlist model and rows: {a.tones} "
          f"tones x 3 channels, 1 % noise (process CPU, median ratio of {a.repeats} "
          "interleaved rounds [range])")
    for name in PEERS:
        print_peer(peer_ratio(name, a.tones, repeats=a.repeats))
    if a.exact_tones:
        print(f"hostctl fit / scipy least_squares (LM), same netlist model and rows: "
              f"{a.exact_tones} exact tones x 3 channels, no noise (process CPU, median ratio of "
              f"{a.repeats} interleaved rounds [range])")
        print_peer(peer_ratio(PEERS[0], a.exact_tones, noise=0.0, repeats=a.repeats))
    whole_fit_vs_closed_form(a.whole_tones, a.repeats)


def whole_fit_vs_closed_form(tones: int, repeats: int) -> dict[str, float]:
    """Issue 12's yardstick: the whole ``fit`` of each netlist preset on its own model's
    noisy tones, over the whole fit of the notebook's closed form on its own (``closed-form``
    must be registered, as ``main`` does)."""
    from hostctl import fit as fitmod
    from hostctl.circuits import get_circuit

    print(f"whole fit, {tones} tones x 3 channels, 1 % noise: preset / closed form "
          f"(process CPU, median of {repeats})")
    data = {n: noisy_tones(n, tones) for n in ("closed-form", "color-organ-ideal",
                                                "color-organ", "color-organ-passive")}
    # the Circuit itself, not its name: a name of a family would choose among its members
    base, _ = _cpu(lambda: fitmod.fit(data["closed-form"], get_circuit("closed-form")), repeats)
    print(f"  {'closed-form':22s} {1e3 * base:7.1f} ms")
    out = {}
    for name, ms in data.items():
        if name == "closed-form":
            continue
        circ = get_circuit(name)
        t, _ = _cpu(lambda ms=ms, circ=circ: fitmod.fit(ms, circ), repeats)
        out[name] = t / base
        print(f"  {name:22s} {1e3 * t:7.1f} ms  = {t / base:.2f} x closed form")
    return out


if __name__ == "__main__":
    main()
