"""Both ends of a feasible interval around 0 by bisection, a few levels per batched call:
the caller evaluates many candidate offsets at once (one array evaluation of the model)."""

from __future__ import annotations

import math
from collections.abc import Callable

#: bisections of each end of an estimated threshold's range (each end to 2**-11 in log t,
#: 0.05 %: the ranges it bounds are 3-10 % wide), and how many levels of them one batch
#: evaluates (2**depth - 1 thresholds per end; a batch's cost grows with its thresholds:
#: 12 steps 2 at a time take 30 % less of an LED-mode fit's CPU than 16 steps 4 at a time)
PROFILE_STEPS = 12
PROFILE_DEPTH = 2


def _bisect_edges(feasible: Callable[[list[float]], list[bool]], steps: int = PROFILE_STEPS,
                  depth: int = PROFILE_DEPTH) -> list[tuple[float, bool]]:
    """Both ends of the feasible offsets around 0: (end, open) below, then above.

    An end is open when the offset 2 is still feasible; else ``steps`` bisections of
    [0, 2] find it. Both ends advance ``depth`` levels per batch: every midpoint those
    levels could ask for goes in (2**depth - 1 per end), and the path is read off the
    answers -- the plain bisection's result, whatever the answers are."""
    ends = [{"in": 0.0, "out": 2.0 * d, "left": steps, "open": None} for d in (-1.0, 1.0)]
    while True:
        pts: list[float] = []
        plan: list[tuple[int, list[float]] | None] = []
        for e in ends:
            if e["open"] or not e["left"]:
                plan.append(None)
                continue
            if e["open"] is None:
                pts.append(e["out"])
            mids = _midpoints(e["in"], e["out"], min(depth, e["left"]))
            plan.append((len(pts), mids))
            pts += mids
        if not pts:
            break
        ans = feasible(pts)
        for e, pl in zip(ends, plan, strict=True):
            if pl is None:
                continue
            i0, mids = pl
            if e["open"] is None:
                e["open"] = ans[i0 - 1]
                if e["open"]:
                    continue
            i = 0
            while i < len(mids):   # the bisection's path through the heap-ordered tree
                if ans[i0 + i]:
                    e["in"], i = mids[i], 2 * i + 2
                else:
                    e["out"], i = mids[i], 2 * i + 1
            e["left"] -= int(math.log2(len(mids) + 1))
    return [(e["out"], True) if e["open"] else (e["in"], False) for e in ends]


def _midpoints(inside: float, outside: float, levels: int) -> list[float]:
    """Every midpoint ``levels`` bisections of [inside, outside] can visit, heap-ordered:
    node i's next is 2i+1 when i is infeasible, 2i+2 when feasible."""
    mids: list[float] = []
    frontier = [(inside, outside)]
    for _ in range(levels):
        nxt = []
        for a, b in frontier:
            m = 0.5 * (a + b)
            mids.append(m)
            nxt += [(a, m), (m, b)]
        frontier = nxt
    return mids
