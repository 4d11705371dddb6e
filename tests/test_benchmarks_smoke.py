"""Smoke test of the benchmark suite: `benchmarks/run_all.py --quick` in a subprocess.

Asserts what the numbers *mean* (every section present, finite, the fit statistically
efficient and its intervals honest), never how long anything took: timings are judged as
ratios to peers by the benchmark itself, not by the test suite.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = ("fit", "efficiency", "led", "scale", "bench")


def _numbers(obj: object, path: str = ""):
    if isinstance(obj, bool):
        return
    if isinstance(obj, (int, float)) or obj is None:
        yield path, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _numbers(v, f"{path}.{k}")
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _numbers(v, f"{path}[{i}]")


def test_run_all_quick(tmp_path: Path) -> None:
    out = tmp_path / "quick.json"
    cp = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "run_all.py"), "--quick",
                         "--json", str(out)], capture_output=True, text=True, cwd=ROOT,
                        timeout=3600)   # a hang guard only, never a speed limit
    assert cp.returncode == 0, cp.stderr[-3000:]
    assert "efficiency" in cp.stdout and "ratio" not in cp.stderr.lower()
    res = json.loads(out.read_text())
    assert res["meta"]["quick"] is True
    for name in SECTIONS:
        sec = res["sections"][name]
        nums = list(_numbers(sec, name))
        assert nums, f"section {name} has no numbers"
        # max_tones is null when a mode runs on its default budget
        bad = [p for p, v in nums if not p.endswith("max_tones")
               and (v is None or not math.isfinite(v))]
        assert not bad, f"non-finite numbers: {bad}"

    eff = res["sections"]["efficiency"]
    assert eff["trials"] >= 200
    assert abs(eff["jacobian_analytic_vs_autograd_max_abs"]) < 1e-9
    for k, p in eff["per_resistor"].items():
        assert 0.7 < p["ratio_rmse_vs_crb"] < 1.5, (k, p)
        assert 0.85 <= p["ci95_coverage"] <= 0.995, (k, p)

    fit = res["sections"]["fit"]
    # same estimator as scipy's LM: the same answer on the same noisy rows
    assert abs(fit["noisy_1pct"]["ratio_err_vs_scipy"] - 1) < 0.01
    assert fit["noise_free"]["hostctl"]["max_rel_err"] < 1e-6

    led = res["sections"]["led"]["results"]
    for b in res["sections"]["led"]["budgets"]:
        a = led["adaptive"][str(b)]
        assert a["tones_used_mean"] <= b
        assert a["mean_worst_corner_err"] < led["grid"][str(b)]["mean_worst_corner_err"]

    for n, r in res["sections"]["scale"]["sizes"].items():
        assert r["max_rel_diff_many_vs_loop"] < 1e-6, n

    for mode, m in res["sections"]["bench"]["modes"].items():
        assert m["tones_mean"] >= 4, mode          # the reference and a designed batch
        assert m["bench_s_mean"] > 0, mode
