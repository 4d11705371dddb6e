"""Problem 3: the vector-calculus identities, checked against torch autograd.

Convention as in the homework: the derivative of a scalar by a column vector is a row
vector; the derivative of a vector f by x is the Jacobian with entries d f_i / d x_j.

    (a) d/dx (x^T c)     = c^T
    (b) d/dx ||x||_2^2   = 2 x^T
    (c) d/dx (A x)       = A
    (d) d/dx (x^T A x)   = x^T (A + A^T)
    (e) (d) equals 2 x^T A  iff  A = A^T

Each identity is evaluated on random inputs of several sizes (float64) and the worst
absolute residual against autograd is reported. For (e) the residual of ``2 x^T A`` is
reported for a symmetric A (tiny) and a non-symmetric A (order one): the condition bites.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class IdentityCheck:
    part: str
    statement: str
    shape: str                 # what the derivative is: row vector / matrix
    max_residual: float        # worst |autograd - formula| over all trials


def check_identities(sizes: tuple[int, ...] = (1, 2, 5, 17), trials: int = 5,
                     seed: int = 0) -> list[IdentityCheck]:
    import torch
    from torch.autograd.functional import jacobian

    g = torch.Generator().manual_seed(seed)
    worst = {k: 0.0 for k in ("a", "b", "c", "d", "e_sym", "e_nonsym")}

    def grad_of(fn, x: torch.Tensor) -> torch.Tensor:
        x = x.clone().requires_grad_(True)
        (gx,) = torch.autograd.grad(fn(x), x)
        return gx  # as a flat tensor; the row vector of the homework

    def upd(key: str, diff: torch.Tensor) -> None:
        worst[key] = max(worst[key], float(diff.abs().max()))

    for n in sizes:
        for _ in range(trials):
            x = torch.randn(n, dtype=torch.float64, generator=g)
            c = torch.randn(n, dtype=torch.float64, generator=g)
            a = torch.randn(n, n, dtype=torch.float64, generator=g)
            s = a + a.T
            upd("a", grad_of(lambda v, c=c: v @ c, x) - c)
            upd("b", grad_of(lambda v: (v * v).sum(), x) - 2 * x)
            upd("c", jacobian(lambda v, a=a: a @ v, x) - a)
            upd("d", grad_of(lambda v, a=a: v @ a @ v, x) - x @ (a + a.T))
            upd("e_sym", grad_of(lambda v, s=s: v @ s @ v, x) - 2 * x @ s)
            if n > 1:
                upd("e_nonsym", grad_of(lambda v, a=a: v @ a @ v, x) - 2 * x @ a)

    return [
        IdentityCheck("a", "d/dx (x^T c) = c^T", "row vector", worst["a"]),
        IdentityCheck("b", "d/dx ||x||^2 = 2 x^T", "row vector", worst["b"]),
        IdentityCheck("c", "d/dx (A x) = A", "n x n matrix", worst["c"]),
        IdentityCheck("d", "d/dx (x^T A x) = x^T (A + A^T)", "row vector", worst["d"]),
        IdentityCheck("e", "A = A^T:  d/dx (x^T A x) = 2 x^T A", "row vector", worst["e_sym"]),
        IdentityCheck("e'", "A != A^T: 2 x^T A is wrong", "row vector", worst["e_nonsym"]),
    ]


def main() -> None:
    print("Problem 3: identities vs torch autograd (float64; n in 1, 2, 5, 17; 5 draws each)")
    print(f"  {'part':4s} {'identity':38s} {'shape':13s} {'max |residual|':>15s}")
    for c in check_identities():
        print(f"  {c.part:4s} {c.statement:38s} {c.shape:13s} {c.max_residual:15.2e}")


if __name__ == "__main__":
    main()
