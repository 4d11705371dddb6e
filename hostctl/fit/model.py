"""log|H| of each row's channel and its Jacobian in log parameters (autograd)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from hostctl.circuits import Circuit

if TYPE_CHECKING:
    import torch


#: model points (starts x rows) evaluated at once
MODEL_POINTS = 1 << 12
#: tone arrays up to this size are recognised by their content (:meth:`_Model._small_tones`)
SMALL_TONES = 256


class _Model:
    """log|H| of the selected channel at each row, and its Jacobian in log R."""

    def __init__(self, circ: Circuit, caps: Mapping[str, float], free: Sequence[str],
                 fixed: Mapping[str, float]) -> None:
        import torch

        self.torch = torch
        self.circ = circ
        self.free = list(free)
        self.fixed = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in fixed.items()}
        self.ct = {k: torch.tensor(float(v), dtype=torch.float64) for k, v in caps.items()}
        self.nch = len(circ.channels)
        self._fast = _fast_setup(circ, caps, self.free, fixed)
        #: per omega tensor the fit passes (problem, sub-problems): its distinct tones
        self._uniq: dict[int, tuple[Any, Any, Any]] = {}
        self._bound: Any = None
        #: a few tones by their bytes (see :meth:`_small_tones`)
        self._small: dict[tuple, tuple[Any, Any, Any]] = {}
        #: the last single-start evaluations: the fit asks again at the same point (the
        #: pilot's end is the MAP's start; the end's statistics and sensitivities)
        self._recent: list[tuple[np.ndarray, Any, Any, np.ndarray, np.ndarray | None]] = []

    def forget(self) -> None:
        """Drop what the model remembers of the tones it saw (a batch's arrays)."""
        self._uniq.clear()
        self._small.clear()
        self._recent = []
        self._bound = None

    def logh(self, theta: np.ndarray, omega: torch.Tensor, ch: torch.Tensor,
             jac: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
        """``theta`` (S, p) log-ohms; ``omega``/``ch`` (n,) or (S, n). Returns (S, n), (S, n, p).

        Without the netlist's numpy program, rows go through torch a block at a time (each
        row is its own computation): a netlist's solve graph takes ~15 kB a point, for
        every start x row."""
        single = theta.shape[0] == 1
        for th, om, c, L, J in self._recent if single else ():
            if (np.array_equal(th, theta) and (J is not None or not jac)
                    and _same(om, omega) and _same(c, ch)):
                return L.copy(), J.copy() if jac else None
        L, J = self._logh_any(theta, omega, ch, jac)
        if single:   # copies: the caller may change what it gets
            self._recent = [(theta.copy(), omega, ch, L.copy(), None if J is None else J.copy()),
                            *self._recent[:1]]
        return L, J

    def _logh_any(self, theta: np.ndarray, omega: torch.Tensor, ch: torch.Tensor,
                  jac: bool) -> tuple[np.ndarray, np.ndarray | None]:
        if self._fast is not None:
            return self._logh_numpy(theta, omega, ch, jac)
        n = omega.shape[-1]
        step = max(1, MODEL_POINTS // max(1, theta.shape[0]))
        if n <= step:
            return self._logh(theta, omega, ch, jac)
        parts = [self._logh(theta, omega[..., i:i + step], ch[..., i:i + step], jac)
                 for i in range(0, n, step)]
        L = np.concatenate([q[0] for q in parts], axis=1)
        return L, np.concatenate([q[1] for q in parts], axis=1) if jac else None

    def _logh(self, theta: np.ndarray, omega: torch.Tensor, ch: torch.Tensor,
              jac: bool) -> tuple[np.ndarray, np.ndarray | None]:
        torch = self.torch
        S = theta.shape[0]
        shape = (S, omega.shape[-1])
        th = torch.from_numpy(np.ascontiguousarray(theta, dtype=np.float64))
        R: dict[str, torch.Tensor] = dict(self.fixed)
        leaves = []
        with torch.set_grad_enabled(jac):
            for k, name in enumerate(self.free):
                v = th[:, k:k + 1].exp().expand(shape).contiguous()
                if jac:
                    v.requires_grad_(True)
                R[name] = v
                leaves.append(v)
            out = self.circ.model(omega, R, self.ct)
            if self.nch == 1:
                H = torch.broadcast_to(out[self.circ.channels[0]], shape)
            else:
                Hs = torch.stack([torch.broadcast_to(out[c], shape) for c in self.circ.channels],
                                 -1)
                H = Hs.gather(-1, torch.broadcast_to(ch, shape).unsqueeze(-1)).squeeze(-1)
            L = H.clamp_min(1e-300).log()
            if not jac:
                return L.numpy(), None
            grads = torch.autograd.grad(L.sum(), leaves, allow_unused=True) if leaves else ()
        J = np.zeros(shape + (len(self.free),))
        for k, g in enumerate(grads):
            if g is not None:
                J[..., k] = (g * leaves[k].detach()).numpy()
        return L.detach().numpy(), J


    def _small_tones(self, om: np.ndarray, chn: np.ndarray) -> tuple | None:
        """A few tones seen before (as another array): the same entry, so the solver's
        binding finds its prepared values too. Newton's method on LED vertices asks for
        the same handful of tones in a fresh array at every step, and each array's
        ``unique`` and element values cost more than the solve itself."""
        if om.size > SMALL_TONES:
            return None
        u = self._small.get((om.shape, chn.ndim, om.tobytes()))
        if u is None and len(self._small) >= 64:
            self._small.clear()
        return u

    def _logh_numpy(self, theta: np.ndarray, omega: Any, ch: Any, jac: bool
                    ) -> tuple[np.ndarray, np.ndarray | None]:
        """:meth:`logh` from the netlist's numpy program and its adjoint (no autograd): each
        distinct tone solved once for all channels, the Jacobian exact."""
        over, nodes, ref = self._fast
        om = omega.numpy() if hasattr(omega, "numpy") else np.asarray(omega)
        chn = ch.numpy() if hasattr(ch, "numpy") else np.asarray(ch)
        if om.ndim == 2 and om.shape[0] == 1:
            om, chn = om[0], chn.reshape(-1)
        solver = self.circ.solver
        if self._bound is None:
            self._bound = solver.bind(over, self.free)
        values = {name.lower(): np.exp(theta[:, k])[:, None] for k, name in enumerate(self.free)}
        # rows share tones across channels (and boards across boards): each distinct tone
        # solved once, unless boards' tones differ so much that rows are fewer
        u = self._uniq.get(id(omega))
        if u is None or u[0] is not omega:   # (the entry holds omega: ids stay unique)
            u = self._small_tones(om, chn)
        if u is None or (u[0] is not omega and om.size > SMALL_TONES):
            uo, inv = np.unique(om, return_inverse=True)
            if len(self._uniq) >= 8:
                self._uniq.clear()
            rows = len(uo) > om.shape[-1] or om.ndim != chn.ndim
            u = self._uniq[id(omega)] = ((omega, om, None) if rows else
                                         (omega, uo[None, :], inv.reshape(om.shape)))
            if om.size <= SMALL_TONES:
                self._small[(om.shape, chn.ndim, om.tobytes())] = u
        _, omb, inv = u
        prep = self._bound(omb, values)
        if not jac:
            H = _pick(np.abs(solver.solve_numpy(None, None, nodes, prep)), inv, chn, ref, False)
            return np.log(np.maximum(H, 1e-300)), None
        V, dlog = solver.log_gains(nodes, self.free, prep, ref)
        H = _pick(np.abs(V), inv, chn, ref, False)
        J = _pick(dlog, inv, chn, False, False)
        J[H < 1e-300] = 0.0
        return np.log(np.maximum(H, 1e-300)), J


_SHARED: dict[tuple, _Model] = {}


def shared_model(circ: Circuit, caps: Mapping[str, float], free: Sequence[str],
                 fixed: Mapping[str, float]) -> _Model:
    """One model for the problems of one circuit, capacitors and parameters (fit_many's
    boards, a family's re-fits): its memories key on what they hold, so sharing is safe,
    and a thousand boards do not each build torch tensors and a numpy binding."""
    key = (id(circ), tuple(sorted((k, float(v)) for k, v in caps.items())), tuple(free),
           tuple(sorted((k, float(v)) for k, v in fixed.items())))
    m = _SHARED.get(key)
    if m is None or m.circ is not circ:
        if len(_SHARED) >= 16:
            _SHARED.clear()
        m = _SHARED[key] = _Model(circ, caps, free, fixed)
    return m


def _same(a: Any, b: Any) -> bool:
    """The same tones (or channels): the same object, or equal arrays/tensors."""
    return a is b or (type(a) is type(b) and tuple(a.shape) == tuple(b.shape)
                      and bool((a == b).all()))


def _pick(a: np.ndarray, inv: np.ndarray | None, chn: np.ndarray, ref: bool, log: bool
          ) -> np.ndarray:
    """Each row's channel out of the solved nodes ``[ref] + channels`` (axis 2 of ``a``;
    axis 1 the distinct tones ``inv`` points into, or the rows themselves): the ratio of
    magnitudes, or the difference of log-derivatives."""
    t = np.arange(chn.shape[-1]) if inv is None else inv
    c = chn + (1 if ref else 0)
    if chn.ndim == 2:
        s_ix = np.arange(a.shape[0])[:, None]
        t = t if t.ndim == 2 else t[None, :]
        out = a[s_ix, t, c]
        base = a[s_ix, t, 0] if ref else None
    else:
        out = a[:, t, c]
        base = a[:, t, 0] if ref else None
    if base is None:
        return out
    return out - base if log else out / base


def _fast_setup(circ: Circuit, caps: Mapping[str, float], free: Sequence[str],
                fixed: Mapping[str, float]) -> tuple[dict, list[str], bool] | None:
    """(overrides, nodes, has ref) when the netlist's numpy program can stand in for
    autograd: every element value a monomial in the free parameters (``{R_low/S_low}``)."""
    solver = getattr(circ, "solver", None)
    if solver is None:
        return None
    from hostctl.circuits.registry import _overrides

    over = _overrides(circ, {k: float(v) for k, v in fixed.items()},
                      {k: float(v) for k, v in caps.items()})
    if solver._monomials(free, over) is None:
        return None
    ref = circ.probe.get("ref")
    nodes = ([ref] if ref else []) + [circ.probe[c] for c in circ.channels]
    return over, nodes, bool(ref)

