"""The pivoting dense solve (LAPACK) of a compiled netlist: the fallback when the sparse
elimination plan cannot be used, the singular-circuit check, and its sensitivities."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from hostctl.circuits.slots import _INV, _REAL
from hostctl.errors import InputError


class DenseSolve:
    """Dense solves for :class:`hostctl.circuits.mna.MNA` (its compiled index arrays)."""

    size: int
    net: Any
    _slots: list
    _const: list
    _mat: list
    _rhs: list
    _by_slot: Any

    def _dense_system(self, vals: list, batch: tuple[int, ...]) -> tuple[Any, Any]:
        import numpy as np

        D = self.size
        fold = [None if c is None or h not in (_REAL, _INV) else (c if h == _REAL else 1.0 / c)
                for (_e, h), c in zip(self._slots, self._const, strict=True)]
        val = [v if v is not None else fold[s] for s, v in enumerate(vals)]
        Y = np.zeros(batch + (D * D,), dtype=complex)
        b = np.zeros(batch + (D,), dtype=complex)
        for s, r, c, coef in self._mat:
            Y[..., r * D + c] += coef * val[s]
        for s, n, coef in self._rhs:
            b[..., n] += coef * val[s]
        return Y.reshape(batch + (D, D)), b

    def _dense_numpy(self, vals: list, batch: tuple[int, ...]) -> Any:
        """Pivoting dense solve (LAPACK): the fallback, and the singular-circuit check."""
        import numpy as np

        Y, b = self._dense_system(vals, batch)
        try:
            x = np.linalg.solve(Y, b[..., None])[..., 0]
        except np.linalg.LinAlgError:
            x = np.full(b.shape, np.nan, dtype=complex)
        if not np.isfinite(x).all():
            raise InputError("the circuit's equations are singular (a loop of voltage "
                             "sources, or a node only capacitors reach at 0 Hz)", self.net.path)
        return x

    def _dense_sens(self, vals: list, batch: tuple[int, ...], cols: Sequence[int],
                    seeds: Sequence[int], grads: Sequence) -> list:
        """What the program returns (x at ``cols``, then each parameter's derivative of
        x at ``seeds``, seeds on a leading axis), by dense solves."""
        import numpy as np

        x = self._dense_numpy(vals, batch)
        Y, _ = self._dense_system(vals, batch)
        E = np.zeros((self.size, len(seeds)))
        E[list(seeds), range(len(seeds))] = 1.0
        M = np.linalg.solve(np.swapaxes(Y, -1, -2), np.broadcast_to(E, batch + E.shape))
        xz = np.concatenate([x, np.zeros(batch + (1,))], -1)        # -1: ground
        mz = np.concatenate([M, np.zeros(batch + (1, len(seeds)))], -2)
        out = [xz[..., c] for c in cols]
        for terms in grads:
            d = np.zeros(batch + (len(seeds),), dtype=complex)
            for s, k in terms:
                g = np.zeros_like(d)
                for r, c, coef in self._by_slot[s][0]:
                    g -= coef * mz[..., r, :] * xz[..., c, None]
                for n, coef in self._by_slot[s][1]:
                    g += coef * mz[..., n, :]
                d += k * np.asarray(vals[s])[..., None] * g
            out.append(np.moveaxis(d, -1, 0))
        return out
