"""Sparse Gaussian elimination planned once per netlist, run batched in torch.

A batched ``torch.linalg.solve`` of thousands of small complex systems spends its time in
per-matrix LAPACK calls. A nodal matrix is sparse and its structure is known before any
value is, so the elimination order (Markowitz, least fill first) and every update's
positions are computed once; a solve is then ~a dozen vectorised steps over the batch,
each a gather, an outer product and an ``index_add`` on the structural non-zeros only.

Pivots are static: node rows pivot on their own (admittance) diagonal, a voltage-source
or VCVS branch row pivots on the node it drives, and that node's KCL row then pivots on
the branch current. The caller falls back to a pivoting dense solve whenever a pivot
comes out zero or a result non-finite.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any


@dataclass
class Plan:
    size: int
    #: structural positions (row, col) in storage order
    positions: list[tuple[int, int]]
    #: per step: (row, col, pivot pos, I rows, column-c positions of I, row-r positions of J,
    #: J cols, update target positions |I| x |J| flattened)
    steps: list[tuple[int, int, int, list[int], list[int], list[int], list[int], list[int]]]


def plan(size: int, pattern: set[tuple[int, int]], pairs: Sequence[tuple[int, int]]
         ) -> Plan | None:
    """Elimination plan for a ``size`` square pattern; ``pairs`` are (branch row, node)
    matches. None when no static pivot sequence exists (use a dense solve)."""
    pat = set(pattern)
    branch_of = {k: a for k, a in pairs}
    node_of = {a: k for k, a in pairs}
    for k, a in pairs:
        if (k, a) not in pat or (a, k) not in pat:
            return None
    for i in range(size):
        if i not in branch_of and i not in node_of and (i, i) not in pat:
            return None
    rows_left, cols_left = set(range(size)), set(range(size))
    forced: tuple[int, int] | None = None
    order: list[tuple[int, int]] = []
    while rows_left:
        if forced is not None:
            r, c = forced
            forced = None
        else:
            cands = [(k, branch_of[k]) if k in branch_of else (k, k) for k in rows_left
                     if k not in node_of]
            if not cands:
                return None
            r, c = min(cands, key=lambda rc: _markowitz(pat, rows_left, cols_left, *rc))
            if r in branch_of:
                forced = (c, r)
        order.append((r, c))
        _eliminate(pat, rows_left, cols_left, r, c)
    return _index(size, pattern, order)


def _markowitz(pat, rows_left, cols_left, r, c) -> tuple[int, int, int]:
    nr = sum(1 for j in cols_left if (r, j) in pat) - 1
    nc = sum(1 for i in rows_left if (i, c) in pat) - 1
    return (nr * nc, r, c)


def _eliminate(pat, rows_left, cols_left, r, c) -> None:
    rows_left.discard(r)
    cols_left.discard(c)
    I = [i for i in rows_left if (i, c) in pat]
    J = [j for j in cols_left if (r, j) in pat]
    for i in I:
        for j in J:
            pat.add((i, j))


def _index(size: int, pattern: set[tuple[int, int]], order) -> Plan:
    pat = set(pattern)
    rows_left, cols_left = set(range(size)), set(range(size))
    for r, c in order:  # the fill, so every position exists before it is indexed
        _eliminate(pat, rows_left, cols_left, r, c)
    positions = sorted(pattern) + sorted(pat - set(pattern))
    pos = {p: n for n, p in enumerate(positions)}
    rows_left, cols_left = set(range(size)), set(range(size))
    steps = []
    for r, c in order:
        rows_left.discard(r)
        cols_left.discard(c)
        I = sorted(i for i in rows_left if (i, c) in pat)
        J = sorted(j for j in cols_left if (r, j) in pat)
        steps.append((r, c, pos[(r, c)], I, [pos[(i, c)] for i in I], [pos[(r, j)] for j in J],
                      J, [pos[(i, j)] for i in I for j in J]))
    return Plan(size, positions, steps)


def _forward_waves(steps) -> list[list[int]]:
    """Group steps into waves run as one vectorised step each: a step reading what an
    earlier one writes goes to a later wave, one writing what an earlier one reads to the
    same or a later wave (reads come first within a wave)."""
    wave_of: list[int] = []
    last_write: dict[tuple[str, int], int] = {}
    last_read: dict[tuple[str, int], int] = {}
    for r, _c, pp, I, Ic, Rj, _J, T in steps:
        reads = [("a", q) for q in (pp, *Ic, *Rj)] + [("b", r)]
        writes = [("a", q) for q in T] + [("b", i) for i in I]
        w = max([last_write[k] + 1 for k in reads if k in last_write]
                + [last_read[k] for k in writes if k in last_read] + [0])
        wave_of.append(w)
        for k in reads:
            last_read[k] = max(last_read.get(k, 0), w)
        for k in writes:
            last_write[k] = max(last_write.get(k, -1), w)
    return _group(wave_of)


def _backward_waves(steps) -> list[list[int]]:
    """Back-substitution waves: x[c] needs every x[j], j in J, solved first."""
    level: dict[int, int] = {}
    wave_of = [0] * len(steps)
    for s in range(len(steps) - 1, -1, -1):
        _r, c, _pp, _I, _Ic, _Rj, J, _T = steps[s]
        wave_of[s] = max([level[j] + 1 for j in J] + [0])
        level[c] = wave_of[s]
    return _group(wave_of)


def _group(wave_of: list[int]) -> list[list[int]]:
    waves: dict[int, list[int]] = {}
    for s, w in enumerate(wave_of):
        waves.setdefault(w, []).append(s)
    return [waves[w] for w in sorted(waves)]


class _Program:
    """One plan as vectorised waves of index tensors."""

    def __init__(self, p: Plan, torch) -> None:
        t = lambda x: torch.tensor(x, dtype=torch.long)  # noqa: E731
        st = p.steps
        self.fwd = []
        for wave in _forward_waves(st):
            pp, lpos, upos, upiv, tgt, blpos, bpiv, bsrc, btgt = ([] for _ in range(9))
            for k, s in enumerate(wave):
                r, _c, ps, I, Ic, Rj, _J, T = st[s]
                pp.append(ps)
                n = 0
                for il, i in zip(Ic, I, strict=True):
                    for uj in Rj:
                        lpos.append(il)
                        upos.append(uj)
                        upiv.append(k)
                        tgt.append(T[n])
                        n += 1
                    blpos.append(il)
                    bpiv.append(k)
                    bsrc.append(r)
                    btgt.append(i)
            self.fwd.append((t(pp), t(lpos), t(upos), t(upiv), t(tgt), t(blpos), t(bpiv),
                             t(bsrc), t(btgt)))
        self.bwd = []
        for wave in _backward_waves(st):
            rows, cols, piv, rj, jcol, which = ([] for _ in range(6))
            for k, s in enumerate(wave):
                r, c, ps, _I, _Ic, Rj, J, _T = st[s]
                rows.append(r)
                cols.append(c)
                piv.append(ps)
                rj.extend(Rj)
                jcol.extend(J)
                which.extend([k] * len(J))
            self.bwd.append((t(rows), t(cols), t(piv), t(rj), t(jcol), t(which)))
        self.pivots = t([ps for _r, _c, ps, *_ in st])

    def run(self, torch, A: Any, b: Any) -> tuple[Any, bool]:
        """Eliminate and back-substitute in place (no autograd): x (size, B), all pivots
        non-zero and x finite. Complex division and complex ``index_add_`` are slow on
        CPU, so pivots are inverted once with real arithmetic and sums go through real
        views."""
        sel = torch.index_select
        real = torch.view_as_real
        for pp, lpos, upos, upiv, tgt, blpos, bpiv, bsrc, btgt in self.fwd:
            inv = _recip(sel(A, 0, pp))   # every read of a wave before its writes
            bu = (sel(A, 0, blpos) * sel(inv, 0, bpiv) * sel(b, 0, bsrc)
                  if len(btgt) else None)
            if len(tgt):
                upd = sel(A, 0, lpos) * sel(A, 0, upos) * sel(inv, 0, upiv)
                real(A).index_add_(0, tgt, real(upd), alpha=-1)
            if bu is not None:
                real(b).index_add_(0, btgt, real(bu), alpha=-1)
        x = torch.zeros_like(b)
        for rows, cols, piv, rj, jcol, which in self.bwd:
            acc = sel(b, 0, rows)
            if len(rj):
                real(acc).index_add_(0, which, real(sel(A, 0, rj) * sel(x, 0, jcol)), alpha=-1)
            x.index_copy_(0, cols, acc * _recip(sel(A, 0, piv)))
        # a zero pivot gives inf/nan in x, and one sum carries any of them
        return x, bool(torch.isfinite(real(x).sum()))


def _recip(z: Any) -> Any:
    """1/z by real arithmetic (inf/nan for z = 0, which the caller's check catches)."""
    return z.conj() * (1.0 / (z.real * z.real + z.imag * z.imag))


class Compiled:
    """A plan (and its transpose's, for the adjoint) as vectorised programs, with the map
    from slot values to matrix entries.

    ``Y`` has entries ``A[pos[e]] += coef[e] * V[slot[e]]`` and ``b = Q^T V[src]``.
    :meth:`solve` is differentiable in ``V`` through a custom autograd function: the
    forward pass builds and eliminates without recording anything, the backward pass
    solves the adjoint system ``Y^H lam = dL/dx`` with the transposed plan (only for the
    batch columns the incoming gradient touches) and maps ``-lam x^H`` back to the slots,
    so a Jacobian costs two eliminations, not a graph of every step.
    """

    def __init__(self, p: Plan, pt: Plan, torch, slot, pos, coef, src, Q) -> None:
        self.torch = torch
        self.size = p.size
        self.prog = _Program(p, torch)
        self.prog_t = _Program(pt, torch)
        self.nnz, self.nnz_t = len(p.positions), len(pt.positions)
        where = {q: n for n, q in enumerate(pt.positions)}
        long = torch.long
        # entries of the transposed matrix: straight into the transposed plan's storage
        self.pos_t = torch.tensor([where[(c, r)] for r, c in (p.positions[q] for q in pos)],
                                  dtype=long)
        self.slot = torch.as_tensor(slot, dtype=long)
        self.pos = torch.as_tensor(pos, dtype=long)
        self.coef = torch.as_tensor(coef).unsqueeze(-1)
        # every coefficient is real or imaginary: build real and imaginary parts as the
        # two halves of one real tensor
        c = torch.as_tensor(coef)
        is_im = c.imag != 0
        self.kre = torch.where(is_im, c.imag, c.real).unsqueeze(-1).contiguous()
        self.half = is_im.long()
        self.erow = torch.tensor([p.positions[q][0] for q in pos], dtype=long)
        self.ecol = torch.tensor([p.positions[q][1] for q in pos], dtype=long)
        self.src = torch.as_tensor(src, dtype=long)
        self.Qt = torch.as_tensor(Q).T.contiguous()         # (size, Ks)
        self.Qc = torch.as_tensor(Q).conj().contiguous()    # (Ks, size)
        self.dense = torch.tensor([r * p.size + c for r, c in p.positions], dtype=long)
        self.fn = _function(torch)

    def build(self, V: Any, transpose: bool = False) -> tuple[Any, Any]:
        """(A, b) for slot values ``V`` (K, B), in this plan's (or the transposed) storage."""
        torch = self.torch
        n, pos = (self.nnz_t, self.pos_t) if transpose else (self.nnz, self.pos)
        vals = torch.index_select(V, 0, self.slot) * self.kre
        parts = torch.zeros((2 * n, V.shape[1]), dtype=V.dtype).index_add_(
            0, pos + n * self.half, vals)
        A = torch.complex(parts[:n], parts[n:])
        b = self.Qt @ V[self.src].to(torch.complex128)
        return A, b

    def solve(self, V: Any) -> tuple[Any, bool]:
        """x (size, B) for slot values ``V`` (K, B), and whether every pivot was non-zero
        and x finite (else use a pivoting solve)."""
        x, ok = self.fn.apply(V, self)
        return x, bool(ok)

    def grad(self, V: Any, x: Any, gx: Any) -> Any:
        """dL/dV from dL/dx: the adjoint solve, then ``-lam x^H`` at each entry."""
        torch = self.torch
        cols = (gx != 0).any(0).nonzero().squeeze(-1)
        part = len(cols) < gx.shape[1]
        if part:   # e.g. one row of a Jacobian at a time: solve only where it matters
            V, x, gx = V[:, cols], x[:, cols], gx[:, cols]
        if V.shape[1] <= 16:   # a few columns: one LAPACK call beats the program's steps
            A, _ = self.build(V)
            Y = torch.zeros((self.size * self.size, V.shape[1]), dtype=A.dtype)
            Y[self.dense] = A
            Yh = Y.T.reshape(-1, self.size, self.size).mH
            lam = torch.linalg.solve(Yh, gx.T.unsqueeze(-1)).squeeze(-1).T
        else:
            At, _ = self.build(V, transpose=True)
            lam, _ = self.prog_t.run(torch, At, torch.conj_physical(gx))
            lam = lam.conj()
        ge = (-lam[self.erow] * x[self.ecol].conj() * self.coef.conj()).real
        gV = torch.zeros(V.shape, dtype=V.dtype).index_add_(0, self.slot, ge)
        if len(self.src):
            gV.index_add_(0, self.src, (self.Qc @ lam).real)
        return gV, cols if part else None


def _function(torch):
    class _Solve(torch.autograd.Function):
        @staticmethod
        def forward(ctx, V, comp):
            A, b = comp.build(V)
            x, ok = comp.prog.run(torch, A, b)
            ctx.comp = comp
            ctx.save_for_backward(V, x)
            flag = torch.tensor(ok)
            ctx.mark_non_differentiable(flag)
            return x, flag

        @staticmethod
        def backward(ctx, gx, _gflag):
            V, x = ctx.saved_tensors
            gV, cols = ctx.comp.grad(V, x, gx)
            if cols is not None:
                full = torch.zeros_like(V)
                full[:, cols] = gV
                gV = full
            return gV, None

    return _Solve
