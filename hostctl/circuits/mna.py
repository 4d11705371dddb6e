"""Modified nodal analysis in torch: node voltages of a netlist, differentiable in its
parameters, batched over tones and boards.

A netlist is compiled once into index arrays: every element value ("slot") contributes
``coef * value`` at fixed positions of the admittance matrix ``Y`` (size nodes + branches)
or of the source vector. A call evaluates the slot values for the given parameter tensors
and builds ``Y``'s structural non-zeros for the whole batch with two small matrix products
(real and imaginary parts), then solves by a sparse elimination planned once
(``elimination``), falling back to a pivoting ``torch.linalg.solve``; autograd carries
gradients to every parameter tensor. Stamps: R ``1/R``, C ``j w C``, L ``1/(j w L)``,
V a branch ``V_a - V_b = AC``, I into the right-hand side, E a branch
``V_a - V_b - mu (V_c - V_d) = 0``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from hostctl.circuits import expr as ex
from hostctl.circuits.dense import DenseSolve
from hostctl.circuits.netlist import GROUND, Netlist
from hostctl.circuits.slots import (  # noqa: F401 (part of this module's interface)
    _INV,
    _INV_OMEGA,
    _OMEGA,
    _REAL,
    CHUNK,
    _assemble,
    _chunked,
    _stack,
    _transform,
)
from hostctl.circuits.structure import (
    _check_floating,
    _depends,
    _evaluate_all,
    _match,
    _topo,
    parameter_env,
)
from hostctl.errors import InputError

if TYPE_CHECKING:
    import torch



class MNA(DenseSolve):
    """A netlist compiled for AC analysis (no torch needed until :meth:`solve`)."""

    def __init__(self, net: Netlist) -> None:
        self.net = net
        self.nodes = net.nodes
        self.index = {n: i for i, n in enumerate(self.nodes)}
        _check_floating(net)
        branch = [e for e in net.elements if e.kind in "VE"]
        self.size = len(self.nodes) + len(branch)
        row = {e.name: len(self.nodes) + k for k, e in enumerate(branch)}
        self._slots: list[tuple[str, int]] = []     # (expr, how)
        mat: list[tuple[int, int, int, float]] = []  # (slot, row, col, coef)
        rhs: list[tuple[int, int, complex]] = []
        for e in net.elements:
            self._stamp(e, row.get(e.name), mat, rhs)
        self._mat = mat
        self._rhs = rhs
        self._pairs = _match(branch, row, self.index)
        self._order = _topo(net)
        self._defaults = _evaluate_all(net, self._order)
        self._const = [ex.constant(s) for s, _ in self._slots]
        self._tensors: dict[str, Any] | None = None
        self._plan: Any = None
        self._programs: dict[tuple, Any] = {}
        self._deps = [_depends(net, e) for e, _ in self._slots]
        self._by_slot: list[tuple[list, list]] = [([], []) for _ in self._slots]
        for s, r, c, coef in mat:
            self._by_slot[s][0].append((r, c, coef))
        for s, n, coef in rhs:
            self._by_slot[s][1].append((n, coef))

    def _slot(self, value: str, how: int) -> int:
        self._slots.append((value, how))
        return len(self._slots) - 1

    def _stamp(self, e, br: int | None, mat: list, rhs: list) -> None:
        idx = self.index
        a, b = (idx.get(n) for n in e.nodes[:2])

        def put(s: int, r: int | None, c: int | None, coef: float) -> None:
            if r is not None and c is not None:
                mat.append((s, r, c, coef))

        if e.kind in "RCL":
            s = self._slot(e.value, {"R": _INV, "C": _OMEGA, "L": _INV_OMEGA}[e.kind])
            for r, c, k in ((a, a, 1.0), (b, b, 1.0), (a, b, -1.0), (b, a, -1.0)):
                put(s, r, c, k)
            return
        ph = complex(math.cos(math.radians(e.phase_deg)), math.sin(math.radians(e.phase_deg)))
        if e.kind == "I":
            s = self._slot(e.value, _REAL)
            for n, k in ((a, -ph), (b, ph)):  # SPICE: current flows a -> through it -> b
                if n is not None:
                    rhs.append((s, n, k))
            return
        one = self._slot("1.0", _REAL)
        for r, c, k in ((a, br, 1.0), (b, br, -1.0), (br, a, 1.0), (br, b, -1.0)):
            put(one, r, c, k)
        if e.kind == "V":
            rhs.append((self._slot(e.value, _REAL), br, ph))
        else:  # E: V_a - V_b - mu (V_c - V_d) = 0
            s = self._slot(e.value, _REAL)
            c, d = (idx.get(n) for n in e.nodes[2:])
            put(s, br, c, -1.0)
            put(s, br, d, 1.0)

    def _build(self, torch) -> dict[str, Any]:
        """Coefficient matrices and the elimination plan as torch tensors (first solve)."""
        import numpy as np

        from hostctl.circuits import elimination

        pattern = {(r, c) for _, r, c, _ in self._mat}
        pl = elimination.plan(self.size, pattern, self._pairs)
        pt = elimination.plan(self.size, {(c, r) for r, c in pattern}, self._pairs)
        if pt is None:
            pl = None
        positions = pl.positions if pl else sorted(pattern)
        pos = {p: n for n, p in enumerate(positions)}
        K = len(self._slots)
        P = np.zeros((K, len(positions)))
        for s, r, c, coef in self._mat:
            P[s, pos[(r, c)]] += coef
        Q = np.zeros((K, self.size), dtype=complex)
        for s, n, coef in self._rhs:
            Q[s, n] += coef
        how = np.array([h for _, h in self._slots])
        im = np.isin(how, (_OMEGA, _INV_OMEGA))
        # Y's values: A[pos] += coef * value[slot] (j * value for the omega slots)
        slot, where = np.nonzero(P)
        coef = P[slot, where] * np.where(im[slot], 1j, 1.0)
        src = np.flatnonzero(np.abs(Q).sum(1))
        comp = None
        if pl is not None:
            comp = elimination.Compiled(pl, pt, torch, slot, where, coef, src, Q[src])
        return {"slot": torch.from_numpy(slot), "pos": torch.from_numpy(where),
                "coef": torch.from_numpy(coef).unsqueeze(-1), "nnz": len(positions),
                "src": torch.from_numpy(src), "Qt": torch.from_numpy(Q[src].T.copy()),
                "plan": comp, "dense": torch.tensor([r * self.size + c for r, c in positions],
                                                    dtype=torch.long)}

    def solve(self, omega: Any, values: Mapping[str, Any] | None = None,
              nodes: Sequence[str] | None = None) -> torch.Tensor:
        """Complex node voltages, shape ``batch + (len(nodes),)``.

        ``omega`` rad/s and each parameter value (name -> float or float64 tensor; any other
        parameter takes its default) broadcast together to ``batch``.
        """
        import torch

        vs = values or {}
        if not torch.is_grad_enabled() or not any(
                isinstance(v, torch.Tensor) and v.requires_grad for v in (omega, *vs.values())):
            # nothing to differentiate: the numpy program, without autograd's bookkeeping
            num = {k: v.detach().numpy() if isinstance(v, torch.Tensor) else v
                   for k, v in vs.items()}
            om = omega.detach().numpy() if isinstance(omega, torch.Tensor) else omega
            return torch.from_numpy(self.solve_numpy(om, num, nodes))
        if self._tensors is None:
            self._tensors = self._build(torch)
        T = self._tensors
        nodes = list(self.nodes if nodes is None else nodes)
        cols = [self._node(n) for n in nodes]
        om = torch.as_tensor(omega, dtype=torch.float64)
        vals = self._values(torch, om, values or {})
        batch = torch.broadcast_shapes(om.shape, *(v.shape for v in vals))
        # slot-major layout: every gather in the elimination reads contiguous rows
        V = torch.stack([torch.broadcast_to(v, batch).reshape(-1) for v in vals])
        x = None
        if T["plan"] is not None:
            x, ok = T["plan"].solve(V)
            if not ok:
                x = None
        if x is None:
            A = torch.zeros((T["nnz"], V.shape[1]), dtype=torch.complex128).index_add(
                0, T["pos"], V[T["slot"]] * T["coef"])
            b = T["Qt"] @ V[T["src"]].to(torch.complex128)
            x = self._dense(torch, A.T, b.T).T
        zero = torch.zeros((1,) + x.shape[1:], dtype=x.dtype)
        full = torch.cat([x[:len(self.nodes)], zero])
        return full[cols].T.reshape(batch + (len(cols),))

    def _values(self, torch, om, values: Mapping[str, Any]) -> list:
        """Every slot's value for this call (float64 tensors, omega folded in)."""
        env = self._env(torch, values)
        out = []
        for (expr, how), const in zip(self._slots, self._const, strict=True):
            v = const if const is not None else (
                env[expr] if expr in env else ex.evaluate(expr, env))
            if how == _INV:
                v = 1.0 / v
            elif how == _OMEGA:
                v = v * om
            elif how == _INV_OMEGA:
                v = -1.0 / (v * om)
            out.append(torch.as_tensor(v, dtype=torch.float64))
        return out

    def _dense(self, torch, A, b):
        """Pivoting dense solve (LAPACK): the fallback, and the singular-circuit check."""
        D = self.size
        n = self._tensors["dense"]
        Y = torch.zeros(A.shape[:-1] + (D * D,), dtype=A.dtype).index_add(-1, n, A)
        x, info = torch.linalg.solve_ex(Y.reshape(A.shape[:-1] + (D, D)), b.unsqueeze(-1))
        if bool((info != 0).any()) or not bool(torch.isfinite(torch.view_as_real(x)).all()):
            raise InputError("the circuit's equations are singular (a loop of voltage "
                             "sources, or a node only capacitors reach at 0 Hz)", self.net.path)
        return x.squeeze(-1)

    def _node(self, n: str) -> int:
        n = n.lower()
        if n in GROUND:
            return len(self.nodes)
        if n not in self.index:
            raise InputError(f"no node '{n}' in the circuit", self.net.path)
        return self.index[n]

    def solve_numpy(self, omega: Any, values: Mapping[str, Any] | None = None,
                    nodes: Sequence[str] | None = None, prepared: Any = None) -> Any:
        """:meth:`solve` in numpy (no gradients): reports, plots and ``design`` start
        without torch. The elimination plan as straight-line array code (``program``),
        with a pivoting dense solve where it has no plan or meets a zero pivot.
        ``prepared``: what a :meth:`bind` function returned, instead of omega and values."""
        import numpy as np

        nodes = list(self.nodes if nodes is None else nodes)
        cols = [self._col(n) for n in nodes]
        om, vals, batch = prepared or self._numpy_values(omega, values)
        prog = self._program(tuple(cols))

        def run(vals: list, batch: tuple[int, ...]) -> tuple[Any]:
            out = None
            if prog is not None:
                with np.errstate(all="ignore"):
                    out = _stack(prog(vals, ()), batch)
                if not np.isfinite(out).all():
                    out = None
            if out is None:
                x = self._dense_numpy(vals, batch)
                out = np.concatenate([x, np.zeros(batch + (1,))], -1)[..., cols]
            return (out,)

        return _chunked(run, vals, batch)[0]

    def sensitivities(self, omega: Any, values: Mapping[str, Any] | None,
                      nodes: Sequence[str], wrt: Sequence[str], prepared: Any = None
                      ) -> tuple[Any, Any] | None:
        """Node voltages ``batch + (m,)`` and their derivatives in log parameter
        ``batch + (m, len(wrt))`` (complex, numpy): one forward and one adjoint pass.

        None when an element's value is no monomial in the ``wrt`` parameters (``{R1+R2}``;
        see :meth:`_monomials`): use :meth:`solve` with autograd then."""
        import numpy as np

        if prepared is None and self._monomials(wrt, values or {}) is None:
            return None
        sp = self._sens_plan(tuple(nodes), tuple(wrt))
        if sp is None:
            return None
        cols, seeds, pick, grads, prog = sp
        om, vals, batch = prepared or self._numpy_values(omega, values)
        m = len(cols)
        W = list(np.eye(len(seeds)).reshape((len(seeds), len(seeds)) + (1,) * len(batch)))

        def run(vals: list, batch: tuple[int, ...]) -> tuple[Any, Any]:
            out = None
            if prog is not None:
                with np.errstate(all="ignore"):
                    out = _assemble(prog(vals, W), m, len(seeds), len(wrt), batch)
                if not (np.isfinite(out[0]).all() and np.isfinite(out[1]).all()):
                    out = None
            if out is None:
                out = _assemble(self._dense_sens(vals, batch, cols, seeds, grads), m,
                                len(seeds), len(wrt), batch)
            return out[0], out[1][..., pick, :]

        return _chunked(run, vals, batch)

    def log_gains(self, nodes: Sequence[str], wrt: Sequence[str], prepared: Any,
                  ref: bool = True) -> tuple[Any, Any] | None:
        """The fit's model: node voltages ``batch + (m,)`` (complex) and the real
        ``Re d log(V[k] / V[0]) / d log p`` for k = 1..m-1 (``ref``; else of ``log V[k]``,
        k = 0..m-1), ``batch + (k, len(wrt))``. One forward and one adjoint pass with the
        seeds scaled by 1/V inside the program: no complex Jacobian is built, nothing
        divided after. None where :meth:`sensitivities` would be."""
        import numpy as np

        lp = self._log_plan(tuple(nodes), tuple(wrt), ref)
        if lp is None:
            return None
        cols, seeds, prog = lp
        _om, vals, batch = prepared
        k, m = len(seeds), len(cols)
        ones = (1,) * len(batch)
        W = list(np.eye(k).reshape((k, k) + ones)) + [-np.ones((k,) + ones)]

        def run(vals: list, batch: tuple[int, ...]) -> tuple[Any, Any]:
            with np.errstate(all="ignore"):
                res = prog(vals, W)
            full = (k,) + batch
            J = np.stack([d if np.shape(d) == full else np.broadcast_to(d, full)
                          for d in res[m:]], -1)
            return _stack(res[:m], batch), np.moveaxis(J, 0, -2)   # a view: batch first

        V, J = _chunked(run, vals, batch) if prog is not None else (None, None)
        if V is None or not (np.isfinite(V.sum()) and np.isfinite(J.sum())):
            V, dV = self.sensitivities(None, None, nodes, wrt, prepared)
            J = (dV / V[..., None]).real
            J = J[..., 1:, :] - J[..., :1, :] if ref else J
        return V, J

    def _log_plan(self, nodes: tuple[str, ...], wrt: tuple[str, ...], ref: bool) -> Any:
        """(cols, seeds, program) of :meth:`log_gains`, once; None without a plan."""
        key = ("log", nodes, wrt, ref)
        if key not in self._programs:
            sp = self._sens_plan(nodes, wrt)
            cols = tuple(self._col(n) for n in nodes)
            out = None
            if sp is not None and min(cols) >= 0:
                seeds = cols[1:] if ref else cols
                prog = self._program(cols, seeds, sp[3], cols[0] if ref else -1)
                out = (cols, seeds, prog) if prog is not None else None
            self._programs[key] = out
        return self._programs[key]

    def _sens_plan(self, nodes: tuple[str, ...], wrt: tuple[str, ...]) -> Any:
        """(cols, seeds, seed of each col, per-parameter slot terms, program), once."""
        key = ("sens", nodes, wrt)
        if key in self._programs:
            return self._programs[key]
        groups = self._monomials(wrt)
        out = None
        if groups is not None:
            cols = tuple(self._col(n) for n in nodes)
            seeds = tuple(sorted({c for c in cols if c >= 0}))
            pick = [seeds.index(c) if c >= 0 else len(seeds) for c in cols]
            # d v / d log p = a v for v = c p**a; -a v where the matrix takes 1/v
            grads = tuple(tuple((s, -a if self._slots[s][1] in (_INV, _INV_OMEGA) else a)
                                for s, a in g) for g in groups)
            out = (cols, seeds, pick, grads, self._program(cols, seeds, grads))
        self._programs[key] = out
        return out

    def _monomials(self, wrt: Sequence[str], static: Iterable[str] = ()
                   ) -> list[list[tuple[int, float]]] | None:
        """Per parameter, the slots it sets and its exponent there, when every slot that
        depends on ``wrt`` is a monomial ``c * prod p**a`` in them (``{R_low/S_low}``:
        ``R_low`` 1, ``S_low`` -1) and no parameter given a value (``static``) is computed
        from them. None otherwise: use :meth:`solve` with autograd."""
        static = frozenset(k.lower() for k in static)
        key = ("monomials", tuple(wrt), static)
        if key not in self._programs:
            self._programs[key] = self._find_monomials(wrt, static)
        return self._programs[key]

    def _find_monomials(self, wrt: Sequence[str], static: frozenset[str]
                        ) -> list[list[tuple[int, float]]] | None:
        leaves = frozenset(p.lower() for p in wrt)
        if not leaves <= self._defaults.keys():
            return None
        # a value given for a .param computed from a leaf would cut the chain rule
        if any(_depends(self.net, self.net.param_exprs[k]) & leaves
               for k in static - leaves if k in self.net.param_exprs):
            return None
        defs = {k: v for k, v in self.net.param_exprs.items() if k not in leaves}
        out: list[list[tuple[int, float]]] = [[] for _ in wrt]
        for s, deps in enumerate(self._deps):
            if not deps & leaves:
                continue
            a = ex.exponents(self._slots[s][0], leaves, defs)
            if a is None:
                return None
            for i, p in enumerate(wrt):
                if a.get(p.lower()):
                    out[i].append((s, a[p.lower()]))
        return out

    def _col(self, n: str) -> int:
        """A node's unknown, -1 for ground."""
        i = self._node(n)
        return -1 if i == len(self.nodes) else i

    def bind(self, static: Mapping[str, Any], varying: Sequence[str]) -> Any:
        """``f(omega, {name: array}) -> prepared`` for many solves in which only the
        ``varying`` parameters change (every element value a monomial in them, see
        :meth:`_monomials`): the other slots are evaluated once per omega array, each
        varying slot as its constant factor times its powers of the varying values."""
        import numpy as np

        mono = self._monomials(varying, static)
        if mono is None:
            raise ValueError("a varying parameter enters an element other than as a monomial")
        env = self._env(None, static)
        keys = [v.lower() for v in varying]
        powers: dict[int, list[tuple[str, float]]] = {}
        for p, group in zip(keys, mono, strict=True):
            for s, a in group:
                powers.setdefault(s, []).append((p, a))
        unit = self._env(None, {**static, **dict.fromkeys(keys, 1.0)})
        skip = {s for s, d in enumerate(self._deps) if d & set(keys)}
        var = [(s, self._slots[s][1], np.asarray(ex.evaluate(self._slots[s][0], unit), float),
                powers.get(s, [])) for s in sorted(skip)]
        memo: dict[int, tuple[Any, list, tuple]] = {}

        def prepare(omega: Any, values: Mapping[str, Any]) -> tuple[Any, list, tuple]:
            m = memo.get(id(omega))
            if m is None or m[0] is not omega:   # the same array object: the same tones
                om = np.asarray(omega, dtype=np.float64)
                _, vals, _ = self._numpy_values(om, None, env, skip)
                if len(memo) >= 8:
                    memo.clear()
                m = memo[id(omega)] = (omega, vals, np.broadcast_shapes(
                    om.shape, *(np.shape(v) for v in vals if v is not None)))
            om, vals, base = m
            vals = list(vals)
            values = {k.lower(): v for k, v in values.items()}
            shapes = [base]
            for s, h, c, pw in var:
                v = np.asarray(c, dtype=np.float64)
                for p, a in pw:
                    x = np.asarray(values[p], dtype=np.float64)
                    v = v * (x if a == 1.0 else 1.0 / x if a == -1.0 else x ** a)
                vals[s] = _transform(v, h, om)
                shapes.append(vals[s].shape)
            return om, vals, tuple(np.broadcast_shapes(*shapes))

        return prepare

    def _numpy_values(self, omega: Any, values: Mapping[str, Any] | None,
                      env: Mapping[str, Any] | None = None, skip: set[int] = frozenset()
                      ) -> tuple[Any, list, tuple[int, ...]]:
        """omega, every slot's value (None where the program folded a constant), batch.
        Slots that share an expression (a subcircuit's parts, per instance) share one
        array."""
        import numpy as np

        om = np.asarray(omega, dtype=np.float64)
        env = self._env(None, values or {}) if env is None else env
        memo: dict[tuple[str, int], Any] = {}
        vals: list[Any] = []
        for s, ((expr, how), const) in enumerate(zip(self._slots, self._const, strict=True)):
            if (const is not None and how in (_REAL, _INV)) or s in skip:
                vals.append(None)
                continue
            v = memo.get((expr, how))
            if v is None:
                v = const if const is not None else (
                    env[expr] if expr in env else ex.evaluate(expr, env))
                memo[(expr, how)] = v = _transform(np.asarray(v, dtype=np.float64), how, om)
            vals.append(v)
        batch = np.broadcast_shapes(om.shape, *(np.shape(v) for v in memo.values()))
        return om, vals, tuple(batch)

    def _program(self, xcols: tuple[int, ...], seeds: tuple[int, ...] = (),
                 grads: tuple = (), log_ref: int | None = None) -> Any:
        """The straight-line program for these outputs (built once per output set)."""
        from hostctl.circuits import elimination, program

        key = (xcols, seeds, grads, log_ref) if log_ref is not None else (xcols, seeds, grads)
        if key in self._programs:
            return self._programs[key]
        if self._plan is None:
            pattern = {(r, c) for _, r, c, _ in self._mat}
            self._plan = elimination.plan(self.size, pattern, self._pairs) or False
        prog = None
        if self._plan:
            fold = [None if c is None or how not in (_REAL, _INV) else
                    (c if how == _REAL else 1.0 / c)
                    for (_e, how), c in zip(self._slots, self._const, strict=True)]
            try:
                prog = program.build(self._plan, self.size, self._mat, self._rhs, fold,
                                     xcols, seeds, grads, log_ref)
            except ZeroDivisionError:
                prog = None
        self._programs[key] = prog
        return prog

    def _env(self, torch, values: Mapping[str, Any]) -> dict[str, Any]:
        """Parameter environment (:func:`structure.parameter_env`)."""
        return parameter_env(self.net, self._defaults, self._order, torch, values)
