"""The course notebook's plain gradient descent (teaching only, not the engine)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

from hostctl.fit.problem import _Problem

if TYPE_CHECKING:
    pass


def _fit_notebook(prob: _Problem, loss: str, init: np.ndarray, lr: float, steps: int
                  ) -> tuple[np.ndarray, int, bool, float]:
    """The notebook's plain gradient descent on R in ohms, as printed in the course."""
    import torch

    p = len(prob.free)
    R = torch.tensor(np.exp(init[:p]), dtype=torch.float64, requires_grad=True)
    m = prob.model
    n = prob.ng + prob.nl
    target = np.concatenate([np.exp(prob.logg), (prob.sgn > 0).astype(float)])
    if loss == "notebook-weighted":
        target[prob.ng:] = 0.3 + 0.7 * target[prob.ng:]
    tgt = torch.from_numpy(target)
    omega, ch = prob.omega, prob.ch
    circ = prob.circ
    converged = False
    lval = math.inf
    it = 0
    for it in range(1, steps + 1):  # noqa: B007
        vals = dict(m.fixed)
        vals.update({name: R[k] for k, name in enumerate(prob.free)})
        out = circ.model(omega, vals, m.ct)
        H = torch.stack([torch.broadcast_to(out[c], (n,)) for c in circ.channels], -1)
        H = H.gather(-1, ch.unsqueeze(-1)).squeeze(-1)
        lo = ((H - tgt) ** 2).mean()
        (g,) = torch.autograd.grad(lo, R)
        lval = float(lo.detach())
        if lval < 1e-6 or float(g.norm()) < 1e-6:
            converged = True
            break
        with torch.no_grad():
            R -= lr * g
            R.clamp_(min=1e-9)
    return np.log(R.detach().numpy()), it, converged, lval

