"""Start-up cost of hostctl's commands against `import torch`, measured in the same run.

    python benchmarks/bench_startup.py [--repeat 3] [--json FILE]

For each command: the import time Python itself reports (``python -X importtime``, the
sum of the top-level imports) and the process wall time, median of ``--repeat`` runs,
next to the same for ``python -c "import torch"``, in the same run. Only fitting should pay
for torch, so ``--help``, ``design``, ``devices --no-probe`` and ``tone --help`` should cost
a small fraction of the torch line (issue 18: each <= 0.5 s; ``fit --json`` <= the torch
line + 0.5 s) (tests/test_startup.py checks that torch is not imported at
all; this script gives the numbers, which depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMMANDS: list[tuple[str, list[str]]] = [
    ("hostctl --help", ["-m", "hostctl", "--help"]),
    ("hostctl design", ["-m", "hostctl", "design"]),
    ("hostctl devices --no-probe", ["-m", "hostctl", "devices", "--no-probe"]),
    ("hostctl tone --help", ["-m", "hostctl", "tone", "--help"]),
    ("hostctl probe --help", ["-m", "hostctl", "probe", "--help"]),
    ("hostctl fit --json (notebook)",
     ["-m", "hostctl", "fit", str(ROOT / "examples/notebook_gain.csv"), "--circuit",
      "color-organ", "--json"]),
    ('python -c "import torch"', ["-c", "import torch"]),
]
_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \| ( *)(\S+)")


def import_seconds(stderr: str) -> tuple[float, bool]:
    """Sum of the cumulative times of top-level imports; and whether torch was one."""
    total, torch = 0, False
    for m in _LINE.finditer(stderr):
        if not m.group(3):                       # top level: its cumulative covers children
            total += int(m.group(2))
        torch = torch or m.group(4) == "torch"
    return total / 1e6, torch


def run_once(args: list[str]) -> tuple[float, float, float, bool]:
    """One process: (import seconds, wall, its own CPU seconds, whether torch was imported)."""
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    t = time.perf_counter()
    r0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    p = subprocess.run([sys.executable, "-X", "importtime", *args], capture_output=True,
                       text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - t
    r1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    # the process's own CPU seconds: on a shared machine the wall time also counts other
    # processes' turns, the CPU time much less so
    cpu = r1.ru_utime - r0.ru_utime + r1.ru_stime - r0.ru_stime
    if p.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({p.returncode}): {p.stderr[-400:]}")
    imports, torch = import_seconds(p.stderr)
    return imports, wall, cpu, torch


def measure(repeat: int) -> tuple[dict, list[float], list[float]]:
    """Every command once a round, ``repeat`` rounds (a slow stretch of the machine hits
    all of them alike): each command's medians, and per round the fit's wall and CPU
    minus the torch import's."""
    runs: dict[str, list] = {name: [] for name, _ in COMMANDS}
    for _ in range(repeat):
        for name, args in COMMANDS:
            runs[name].append(run_once(args))
    rows = {name: {"import_s": statistics.median(r[0] for r in rs),
                   "wall_s": statistics.median(r[1] for r in rs),
                   "cpu_s": statistics.median(r[2] for r in rs),
                   "imports_torch": rs[-1][3]} for name, rs in runs.items()}
    fit, ref = runs["hostctl fit --json (notebook)"], runs['python -c "import torch"']
    return (rows, [f[1] - t[1] for f, t in zip(fit, ref, strict=True)],
            [f[2] - t[2] for f, t in zip(fit, ref, strict=True)])


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--json", default=None, help="Also write the numbers here.")
    a = ap.parse_args(argv)
    rows, fit_walls, fit_cpus = measure(a.repeat)
    ref = rows['python -c "import torch"']
    print(f"{'command':<36} {'imports':>9} {'wall':>8} {'cpu':>8} {'/ torch':>8}  torch?")
    for name, r in rows.items():
        print(f"{name:<36} {r['import_s']:>8.3f}s {r['wall_s']:>7.3f}s {r['cpu_s']:>7.3f}s "
              f"{r['import_s'] / ref['import_s']:>8.2f}  {'yes' if r['imports_torch'] else 'no'}")
    print(f"(median of {a.repeat} interleaved rounds; load: {os.getloadavg()[0]:.2f})")
    # issue 18's yardsticks: the light commands <= 0.5 s, the fit <= import torch + 0.5 s
    light = [n for n in rows if n.startswith("hostctl") and "fit" not in n]
    worst = max(light, key=lambda n: rows[n]["wall_s"])
    fit, fit_cpu = statistics.median(fit_walls), statistics.median(fit_cpus)
    print(f"slowest light command: {worst} {rows[worst]['wall_s']:.3f} s (limit 0.5 s); "
          f"fit --json - import torch: {fit:+.3f} s [{min(fit_walls):+.3f}..{max(fit_walls):+.3f}]"
          f" (limit +0.5 s; median of the rounds' differences), CPU {fit_cpu:+.3f} s")
    if a.json:
        Path(a.json).write_text(json.dumps(rows, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    main()
