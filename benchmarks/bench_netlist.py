"""The nodal solver's cost in the fit: log|H| and its Jacobian for S starts x n rows.

The fit's gain model (``_Model.logh``: per-row parameter copies, one backward pass) on the
netlist presets against the notebook's closed form of the same ideal circuit; process CPU
time (one thread), so a loaded box inflates it less than wall time; the median of 30.

    python benchmarks/bench_netlist.py [--rows 1000] [--starts 4]
"""

from __future__ import annotations

import argparse
import math
import time

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1000)
    ap.add_argument("--starts", type=int, default=4)
    a = ap.parse_args()
    import torch

    from hostctl.circuits import NOTEBOOK_VALUES, capacitances, circuit, get_circuit
    from hostctl.circuits.closed_forms import color_organ
    from hostctl.fit.model import _Model

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
        m = _Model(circ, capacitances(circ, 1e-6), list(circ.resistors), {})
        th = (np.log([[NOTEBOOK_VALUES[r] for r in circ.resistors]] * S)
              + rng.normal(0, 0.1, (S, len(circ.resistors))))
        m.logh(th, omega, ch)
        ts = []
        for _ in range(30):
            t = time.process_time()
            m.logh(th, omega, ch)
            ts.append(time.process_time() - t)
        print(f"  {name:22s} {1e3 * float(np.median(ts)):7.2f} ms")


if __name__ == "__main__":
    main()
