"""A netlist's elimination plan as straight-line numpy code, with its adjoint.

The nodal matrix of a preset is ~15 x 15 with ~45 structural non-zeros, and its structure
is known before any value is. Walking the elimination plan (``elimination.plan``) once
with symbolic entries gives a short list of array operations; constants fold on the way
(the ``1``s of a voltage source's branch, a right-hand side that is zero but for the
source row), so what is left is a few hundred numpy operations on arrays that broadcast
(a resistor's conductance ``(S, 1)``, a capacitor's ``(S, U)``), with no Python loop over
tones and no per-matrix LAPACK call.

The adjoint is the reverse of the same program in the right-hand side: ``mu = Y^-T w``
for seeds ``w`` on the output nodes, so the derivative of an output in any element value
``v`` (entries ``coef * v`` of ``Y``) is ``-sum coef mu[row] x[col]``: a Jacobian costs one
more pass, whatever the number of parameters.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from typing import Any

Sym = Any  # a Python number (folded constant) or the name of a generated array

_NAME = re.compile(r"\b[tw]\d+\b|\bv\[\d+\]")


class _Neg(str):
    """The negation of the array this names, not yet emitted: the next operation takes the
    sign (``a - (-b)`` is ``a + b``), so a program has no line that only negates."""

    __slots__ = ()


def _real(a: Sym) -> Sym:
    return a.real if isinstance(a, complex) and a.imag == 0 else a


class _Emitter:
    """Straight-line code with constant folding, sign folding and common subexpressions
    (the adjoint's gradient terms repeat the forward solve's differences)."""

    def __init__(self) -> None:
        self.lines: list[tuple[str, str]] = []
        self._memo: dict[str, str] = {}

    def _new(self, expr: str) -> str:
        name = self._memo.get(expr)
        if name is None:
            name = self._memo[expr] = f"t{len(self.lines)}"
            self.lines.append((name, expr))
        return name

    @staticmethod
    def lit(a: Sym) -> str:
        if isinstance(a, _Neg):
            raise AssertionError("a negation reached an expression unfolded")
        if isinstance(a, str):
            return a
        if isinstance(a, complex):
            return f"complex({a.real!r}, {a.imag!r})"
        return f"({float(a)!r})"

    def neg(self, a: Sym) -> Sym:
        if not isinstance(a, str):
            return -a
        return str(a) if isinstance(a, _Neg) else _Neg(a)

    def plain(self, a: Sym) -> Sym:
        """``a`` with its sign emitted (an output, or an operand nothing else can take)."""
        return self._new(f"-{str(a)}") if isinstance(a, _Neg) else a

    def add(self, a: Sym, b: Sym) -> Sym:
        if not isinstance(a, str) and not isinstance(b, str):
            return a + b
        if not isinstance(a, str) and a == 0:
            return b
        if not isinstance(b, str) and b == 0:
            return a
        if isinstance(b, _Neg):
            return self.sub(a, str(b))
        if isinstance(a, _Neg):
            return self.sub(b, str(a))
        return self._new(f"{self.lit(a)} + {self.lit(b)}")

    def sub(self, a: Sym, b: Sym) -> Sym:
        if not isinstance(a, str) and not isinstance(b, str):
            return a - b
        if not isinstance(b, str) and b == 0:
            return a
        if not isinstance(a, str) and a == 0:
            return self.neg(b)
        if isinstance(b, _Neg):
            return self.add(a, str(b))
        if isinstance(a, _Neg):
            return self.neg(self.add(str(a), b))
        return self._new(f"{self.lit(a)} - {self.lit(b)}")

    def mul(self, a: Sym, b: Sym) -> Sym:
        if not isinstance(a, str) and not isinstance(b, str):
            return a * b
        if not isinstance(a, str):
            a, b = b, a
        if isinstance(a, _Neg):
            return self.neg(self.mul(str(a), b))
        if isinstance(b, _Neg):
            return self.neg(self.mul(a, str(b)))
        if isinstance(b, str):
            return self._new(f"{a} * {b}" if a <= b else f"{b} * {a}")
        b = _real(b)
        if b == 0:
            return 0.0
        if b == 1:
            return a
        if not isinstance(b, complex) and b < 0:
            return self.neg(self.mul(a, -b))
        return self._new(f"{a} * {self.lit(b)}")

    def recip(self, a: Sym) -> Sym:
        if not isinstance(a, str):
            if a == 0:
                raise ZeroDivisionError("structurally zero pivot")
            return 1.0 / a
        if isinstance(a, _Neg):
            return self.neg(self.recip(str(a)))
        return self._new(f"1.0 / {a}")

    def function(self, outs: Sequence[Sym], name: str) -> Callable:
        """Compile the lines the outputs need (dead code dropped) into ``f(v, w)``."""
        outs = [self.plain(o) for o in outs]
        need = {o for o in outs if isinstance(o, str)}
        keep = []
        for n, expr in reversed(self.lines):
            if n in need:
                keep.append((n, expr))
                need.update(_NAME.findall(expr))
        keep.reverse()
        # free each array after its last use: a big batch then holds the working set only
        last: dict[str, int] = {}
        for i, (_n, expr) in enumerate(keep):
            for m in _NAME.findall(expr):
                if m.startswith("t"):
                    last[m] = i
        outs_named = {o for o in outs if isinstance(o, str)}
        body = []
        for i, (n, e) in enumerate(keep):
            body.append(f"    {n} = {e}")
            dead = [m for m in sorted(set(_NAME.findall(e))) if m.startswith("t")
                    and last.get(m) == i and m not in outs_named]
            if dead:
                body.append(f"    del {', '.join(dead)}")
        ws = sorted({m for m in need if m.startswith("w")}, key=lambda s: int(s[1:]))
        head = [f"    {m} = w[{int(m[1:])}]" for m in ws]
        ret = "    return [" + ", ".join(self.lit(o) for o in outs) + "]"
        src = "\n".join([f"def {name}(v, w):", *head, *body, ret])
        scope: dict[str, Any] = {}
        exec(compile(src, f"<netlist program {name}>", "exec"), scope)  # noqa: S102
        return scope[name]


def build(plan: Any, size: int, entries: Sequence[tuple[int, int, int, float]],
          rhs: Sequence[tuple[int, int, complex]], fold: Sequence[Sym | None],
          xcols: Sequence[int], seeds: Sequence[int] = (),
          grads: Sequence[Sequence[tuple[int, float]]] = (), log_ref: int | None = None
          ) -> Callable:
    """``f(v, w) -> [x[c] for c in xcols] + [d x[seeds] / d p for p in grads]``.

    ``entries``: ``Y[r, c] += coef * v[slot]``; ``rhs``: ``b[n] += coef * v[slot]``;
    ``fold[slot]``: the slot's value when it is a constant, else None (read ``v[slot]``);
    ``seeds``: the columns whose ``x`` the adjoint differentiates, ``w[k]`` the seed of
    ``seeds[k]`` (unit vectors on a leading axis give every seed's derivative at once);
    ``grads``: per parameter, the slots it sets and ``d v[slot] / d log p`` as a multiple
    of ``v[slot]``; ``log_ref``: instead, each parameter's ``Re d log(x[seeds[k]] /
    x[log_ref]) / d log p`` (-1: no reference), real, ``w[len(seeds)]`` the reference's
    seed (-1 on the same leading axis): the fit's log-gain Jacobian, with no division or
    complex array left for the caller. Raises ZeroDivisionError when a pivot is
    structurally zero.
    """
    e = _Emitter()

    def val(s: int) -> Sym:
        return fold[s] if fold[s] is not None else f"v[{s}]"

    pos = {p: n for n, p in enumerate(plan.positions)}
    A: dict[int, Sym] = {}
    for s, r, c, coef in entries:
        q = pos[(r, c)]
        A[q] = e.add(A.get(q, 0.0), e.mul(val(s), coef))
    b: dict[int, Sym] = {}
    for s, n, coef in rhs:
        b[n] = e.add(b.get(n, 0.0), e.mul(val(s), coef))
    inv, ell, U = [], [], []
    for r, _c, pp, I, Ic, Rj, _J, T in plan.steps:
        iv = e.recip(A.get(pp, 0.0))
        inv.append(iv)
        ls = []
        n = 0
        for i, ic in zip(I, Ic, strict=True):
            li = e.mul(A.get(ic, 0.0), iv)
            ls.append(li)
            for rj in Rj:
                A[T[n]] = e.sub(A.get(T[n], 0.0), e.mul(li, A.get(rj, 0.0)))
                n += 1
            b[i] = e.sub(b.get(i, 0.0), e.mul(li, b.get(r, 0.0)))
        ell.append(ls)
        U.append([A.get(rj, 0.0) for rj in Rj])
    x: dict[int, Sym] = {}
    for k in range(len(plan.steps) - 1, -1, -1):
        r, c, _pp, _I, _Ic, _Rj, J, _T = plan.steps[k]
        acc = b.get(r, 0.0)
        for j, u in zip(J, U[k], strict=True):
            acc = e.sub(acc, e.mul(u, x.get(j, 0.0)))
        x[c] = e.mul(acc, inv[k])
    outs = [x.get(c, 0.0) for c in xcols]
    if seeds:
        xb: dict[int, Sym] = {}
        for k, c in enumerate(seeds):
            w = f"w{k}" if log_ref is None else e.mul(f"w{k}", e.recip(x.get(c, 0.0)))
            xb[c] = e.add(xb.get(c, 0.0), w)
        if log_ref is not None and log_ref >= 0:
            w = e.mul(f"w{len(seeds)}", e.recip(x.get(log_ref, 0.0)))
            xb[log_ref] = e.add(xb.get(log_ref, 0.0), w)
        mu = _adjoint(e, plan, inv, ell, U, xb)
        memo: dict[int, Sym] = {}
        for g in grads:
            d = _gradient(e, g, entries, rhs, val, x, mu, memo)
            outs.append(d if log_ref is None or not isinstance(d, str)
                        else e._new(f"{e.plain(d)}.real"))
    return e.function(outs, "program")


def _gradient(e: _Emitter, terms: Sequence[tuple[int, float]], entries, rhs, val, x, mu,
              memo: dict[int, Sym]) -> Sym:
    """``sum_s k_s v[s] dOut/dv[s]`` with ``dOut/dv[s] = -sum coef mu[row] x[col]`` over
    the slot's entries (``-(mu_a - mu_b)(x_a - x_b)`` for an admittance) plus its
    right-hand-side terms; ``memo``: each slot's ``v[s] dOut/dv[s]`` once (a slot that
    two parameters set, ``{R_low/S_low}``, costs one term)."""
    total: Sym = 0.0
    for s, k in terms:
        if s not in memo:
            memo[s] = _slot_term(e, s, entries, rhs, val, x, mu)
        total = e.add(total, e.mul(memo[s], k))
    return total


def _slot_term(e: _Emitter, s: int, entries, rhs, val, x, mu) -> Sym:
    """``v[s] dOut/dv[s]`` of one slot (an admittance: its current, an array over the
    batch only, times the seeds' ``mu`` difference)."""
    ent = [(r, c, coef) for q, r, c, coef in entries if q == s]
    pair = _two_terminal(ent)
    if pair is not None and not any(q == s for q, _, _ in rhs):
        a, b = pair
        du = e.sub(mu.get(a, 0.0), mu.get(b, 0.0) if b >= 0 else 0.0)
        dx = e.sub(x.get(a, 0.0), x.get(b, 0.0) if b >= 0 else 0.0)
        return e.neg(e.mul(du, e.mul(dx, val(s))))
    if pair is not None:
        a, b = pair
        du = e.sub(mu.get(a, 0.0), mu.get(b, 0.0) if b >= 0 else 0.0)
        dx = e.sub(x.get(a, 0.0), x.get(b, 0.0) if b >= 0 else 0.0)
        g = e.neg(e.mul(du, dx))
    else:
        g = 0.0
        for r, c, coef in ent:
            g = e.sub(g, e.mul(e.mul(mu.get(r, 0.0), x.get(c, 0.0)), coef))
    for q, n, coef in rhs:
        if q == s:
            g = e.add(g, e.mul(mu.get(n, 0.0), coef))
    return e.mul(g, val(s))


def _two_terminal(ent: list) -> tuple[int, int] | None:
    """(a, b) (-1 for ground) when a slot's entries are an admittance between a and b."""
    diag = [(r, k) for r, c, k in ent if r == c]
    if len(ent) == 1 and len(diag) == 1 and diag[0][1] == 1.0:
        return diag[0][0], -1
    if len(ent) == 4 and len(diag) == 2 and all(k == 1.0 for _, k in diag):
        a, b = diag[0][0], diag[1][0]
        if set(ent) == {(a, a, 1.0), (b, b, 1.0), (a, b, -1.0), (b, a, -1.0)}:
            return a, b
    return None


def _adjoint(e: _Emitter, plan: Any, inv, ell, U, xb: dict[int, Sym]) -> dict[int, Sym]:
    """``mu = Y^-T w`` for the seed ``w`` (``xb``, by column): the solve reversed in its
    right-hand side (back substitution first, in elimination order, then the row updates
    in reverse)."""
    bb: dict[int, Sym] = {}
    for k, (r, c, _pp, _I, _Ic, _Rj, J, _T) in enumerate(plan.steps):
        t = e.mul(xb.get(c, 0.0), inv[k])
        bb[r] = t
        for j, u in zip(J, U[k], strict=True):
            xb[j] = e.sub(xb.get(j, 0.0), e.mul(u, t))
    for k in range(len(plan.steps) - 1, -1, -1):
        r, _c, _pp, I, *_ = plan.steps[k]
        for i, li in zip(I, ell[k], strict=True):
            bb[r] = e.sub(bb.get(r, 0.0), e.mul(li, bb.get(i, 0.0)))
    return bb
