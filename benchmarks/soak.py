"""Seeded soak test: many `hostctl calibrate` runs against a virtual bench with random faults.

Each run draws byte-fault rates (drop/corrupt/dup, together at most ~0.003 per byte:
more makes nearly every 170-byte MEASURE reply fail), late replies, board resets,
unplugs (for good, or re-plugged after a while) and silent sound-card windows at random
command numbers, then runs the whole CLI in-process on a ``sim://`` URL with a small
budget (the default 40-tone budget, which the 1% precision target usually stops at ~25
tones; with a 20-tone budget the fit's own 95% interval is ~2%, so a fault-free run
resumed from scratch can land >1% away by chance). Outcomes:

``finished``   exit 0/1 and every fitted corner within 1% of the fault-free run's (same
               board seed and settings) or of the truth
``resumed``    stopped with exactly one ``hostctl: error:`` line naming ``--resume``, and
               ``--resume DIR --port <fault-free URL>`` then finished right (a stop before
               the session existed, e.g. in the handshake, must not name ``--resume``:
               then a fresh run on the fault-free URL must finish right)
``wrong``      finished (or resumed) with a corner off, or the resume failed
``crashed``    any exception that is not a HostctlError (a traceback), or a stop that
               was not one clear line

    python benchmarks/soak.py --runs 200 --seed 1 --json soak.json
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from hostctl.cli import invoke

TRUTH = {"R_low": 800.0, "R_band_low": 4000.0, "R_band_high": 1000.0, "R_high": 5000.0}
BYTE_RATE_MAX = 0.003
OUTCOMES = ("finished", "resumed", "wrong", "crashed")


cli = invoke   # hostctl in-process: (exit code, stderr, stdout)


def random_faults(rng: random.Random, commands: int) -> str:
    """A fault spec: byte noise plus events at random command numbers (1..commands)."""
    items: list[str] = []
    kinds = [k for k in ("drop", "corrupt", "dup") if rng.random() < 0.5]
    for k in kinds:
        items.append(f"{k}:{rng.uniform(0, BYTE_RATE_MAX / len(kinds)):.5f}")
    for _ in range(rng.choice((0, 0, 1, 2))):
        items.append(f"delay:{rng.choice((0.5, 1.5, 3.0, 8.0))}@{rng.randint(1, commands)}")
    for _ in range(rng.choice((0, 0, 1, 2, 3))):
        items.append(f"reset@{rng.randint(1, commands)}")
    r = rng.random()
    if r < 0.15:
        items.append(f"disconnect@{rng.randint(2, commands)}")
    elif r < 0.3:
        items.append(f"unplug:{rng.choice((0.3, 2.0, 30.0))}@{rng.randint(2, commands)}")
    if rng.random() < 0.3:
        items.append(f"mute@{rng.randint(1, commands)}")
    return ",".join(items)


def corners_off(got: dict[str, float], ref: dict[str, float], tol: float = 0.01) -> list[str]:
    """Corners further than ``tol`` from both the fault-free run's and the truth."""
    return [f"{k} {got.get(k, float('nan')):.1f} Hz (fault-free {ref[k]:.1f}, true {TRUTH[k]:g})"
            for k in ref
            if not (min(abs(got.get(k, 0.0) / ref[k] - 1), abs(got.get(k, 0.0) / TRUTH[k] - 1))
                    < tol)]


def one_run(i: int, rng: random.Random, base: list[str], baselines: dict[int, dict[str, float]],
            work: Path, commands: int) -> dict[str, Any]:
    seed = rng.randrange(5)
    clean = f"sim://?board=notebook&seed={seed}"
    if seed not in baselines:
        code, err, out = cli(["calibrate", *base, "--out", str(work / f"base{seed}"),
                              "--port", clean])
        if code not in (0, 1):
            raise RuntimeError(f"fault-free run failed: {err}")
        baselines[seed] = json.loads(out)["fit"]["corner_hz"]
    faults = random_faults(rng, commands)
    out_dir = work / f"run{i}"
    rec: dict[str, Any] = {"run": i, "seed": seed, "faults": faults}
    t0 = time.monotonic()
    try:
        code, err, stdout = cli(["calibrate", *base, "--out", str(out_dir),
                                 "--port", f"{clean}&faults={faults}"])
        rec["exit"] = code
        if code in (0, 1):
            off = corners_off(json.loads(stdout)["fit"]["corner_hz"], baselines[seed])
            rec["outcome"] = "wrong" if off else "finished"
            rec["detail"] = "; ".join(off)
        else:
            errors = [ln for ln in err.splitlines() if ln.startswith("hostctl: error:")]
            rec["error"] = errors[0] if errors else err.strip()[-300:]
            session = (out_dir / "session.csv").exists()
            if len(errors) != 1 or "Traceback" in err or (
                    session and f"--resume {out_dir}" not in errors[0]):
                rec["outcome"], rec["detail"] = "crashed", "stop was not one clear line"
            else:
                # stopped before the first reading (handshake): nothing to resume, run again
                again = ["--resume", str(out_dir)] if session else \
                    [*base[2:], "--out", str(out_dir)]
                rec["rerun"] = not session
                code2, err2, out2 = cli(["calibrate", "--no-plot", "--json", *again,
                                         "--port", clean])
                rec["resume_exit"] = code2
                if code2 not in (0, 1):
                    rec["outcome"], rec["detail"] = "wrong", f"resume failed: {err2.strip()}"
                else:
                    off = corners_off(json.loads(out2)["fit"]["corner_hz"], baselines[seed])
                    rec["outcome"] = "wrong" if off else "resumed"
                    rec["detail"] = "; ".join(off)
    except Exception:  # noqa: BLE001 - that is exactly what a soak counts
        rec["outcome"] = "crashed"
        rec["detail"] = traceback.format_exc(limit=6)
    rec["seconds"] = round(time.monotonic() - t0, 3)
    shutil.rmtree(out_dir, ignore_errors=True)
    return rec


def soak(runs: int, seed: int, max_tones: int = 40, window_ms: int = 100,
         quiet: bool = True) -> dict[str, Any]:
    """Run the soak; returns {"counts": {...}, "runs": [...]}."""
    base = ["--no-plot", "--json", "--max-tones", str(max_tones), "--window-ms", str(window_ms)]
    commands = min(max_tones, 30) + 8        # HELLO, pre-flight, tones, a few retries
    rng = random.Random(seed)
    baselines: dict[int, dict[str, float]] = {}
    results = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="hostctl-soak-") as d:
        for i in range(runs):
            rec = one_run(i, rng, base, baselines, Path(d), commands)
            results.append(rec)
            if not quiet or rec["outcome"] in ("wrong", "crashed"):
                print(f"{i:4d} {rec['outcome']:9s} {rec['faults']} {rec.get('detail', '')}",
                      file=sys.stderr)
    counts = {k: sum(r["outcome"] == k for r in results) for k in OUTCOMES}
    return {"runs_total": runs, "seed": seed, "max_tones": max_tones, "window_ms": window_ms,
            "seconds": round(time.monotonic() - t0, 1), "counts": counts,
            "baselines": baselines, "runs": results}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-tones", type=int, default=40)
    ap.add_argument("--window-ms", type=int, default=100)
    ap.add_argument("--json", dest="json_path", default=None, help="write every run here")
    ap.add_argument("-v", "--verbose", action="store_true", help="one line per run")
    a = ap.parse_args(argv)
    res = soak(a.runs, a.seed, a.max_tones, a.window_ms, quiet=not a.verbose)
    c = res["counts"]
    print(f"{a.runs} runs (seed {a.seed}, {res['seconds']} s): " +
          ", ".join(f"{k} {c[k]}" for k in OUTCOMES))
    if a.json_path:
        Path(a.json_path).write_text(json.dumps(res, indent=1))
    return 0 if c["wrong"] == 0 and c["crashed"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
