"""Slots: how an element's value enters the admittance matrix (v, j w v, 1/v, 1/(j w v)),
and the batched arrays built from the solves (stacked, chunked, assembled)."""

from __future__ import annotations

from typing import Any

#: how a slot's value v enters Y: v, j w v, 1/v, or 1/(j w v)
_REAL, _OMEGA, _INV, _INV_OMEGA = 0, 1, 2, 3


def _stack(xs: list, batch: tuple[int, ...]) -> Any:
    """Program outputs (arrays that broadcast, or folded numbers) as ``batch + (m,)``."""
    import numpy as np

    out = np.empty(batch + (len(xs),), dtype=complex)
    for i, a in enumerate(xs):
        out[..., i] = a
    return out


#: batch elements per pass of a program: big batches go in pieces, so that the arrays a
#: program holds at once stay a few MB whatever the number of rows or boards
CHUNK = 16384


def _chunked(run: Any, vals: list, batch: tuple[int, ...]) -> tuple:
    """``run(vals, batch)`` over pieces of the batch's longest axis, outputs joined."""
    import math

    import numpy as np

    n = math.prod(batch)
    if n <= CHUNK or not batch:
        return run(vals, batch)
    ax = int(np.argmax(batch))
    step = max(1, CHUNK * batch[ax] // n)
    parts = []
    for a in range(0, batch[ax], step):
        b = min(a + step, batch[ax])
        sub = []
        for v in vals:
            k = ax - (len(batch) - np.ndim(v))
            if v is None or k < 0 or np.shape(v)[k] == 1:
                sub.append(v)
            else:
                sub.append(v[(slice(None),) * k + (slice(a, b),)])
        parts.append(run(sub, batch[:ax] + (b - a,) + batch[ax + 1:]))
    return tuple(np.concatenate(p, axis=ax) for p in zip(*parts, strict=True))


def _transform(v: Any, how: int, om: Any) -> Any:
    """A slot's value from its parameter: v, 1/v, j w v or 1/(j w v)."""
    return (v if how == _REAL else 1.0 / v if how == _INV else
            1j * (v * om) if how == _OMEGA else -1j / (v * om))


def _assemble(res: list, m: int, k: int, p: int, batch: tuple[int, ...]) -> tuple[Any, Any]:
    """A sensitivity program's outputs as V ``batch + (m,)`` and dV ``batch + (k + 1, p)``
    (the last seed row all zero: ground)."""
    import numpy as np

    V = _stack(res[:m], batch)
    dV = np.zeros((p, k + 1) + batch, dtype=complex)
    for i, d in enumerate(res[m:]):
        dV[i, :k] = d
    return V, np.moveaxis(dV, (0, 1), (-1, -2))
