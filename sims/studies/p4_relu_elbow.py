"""Problem 4: where a ReLU's elbow goes after one SGD step.

Single unit ``phi(x) = relu(w x + b)``, loss ``l = 1/2 (phi(x) - y)^2``, ReLU gradient 0
at 0, SGD ``p' = p - lam dl/dp``. The elbow is ``e = -b/w``; after the step it is
``e' = (-b + lam dl/db) / (w - lam dl/dw)``.

Part (b), a point we are 1 too high on (``phi(x) - y = 1``):
  (i)   phi(x) = 0: nothing moves (both gradients are 0: a dead unit learns nothing);
  (ii)  w > 0, x > 0: slope shallower; elbow moves right iff (b - w/x)(lam - w/x) > 0;
  (iii) w > 0, x < 0: slope steeper, elbow moves right;
  (iv)  w < 0, x > 0: slope steeper, elbow moves left.
Worked example lam = 0.1, x = 1, y = 1, w = -2, b = 4: w goes to -2.1 (the slope moves
"the wrong way", steeper) yet the loss falls from 0.5 to 0.32.

Parts (c)-(d): for ``f(x) = W2 relu(W1 x + b)`` the i-th elbow is ``-b_i / W1_i`` and
after one SGD step it is
``(-b_i + lam (f(x) - y) W2_i) / (W1_i - lam x (f(x) - y) W2_i)`` for an active unit,
unchanged otherwise; checked against an autograd step.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class StepResult:
    case: str
    w: float
    b: float
    x: float
    y: float
    lam: float
    dl_dw: float
    dl_db: float
    w_new: float
    b_new: float
    elbow: float
    elbow_new: float
    loss: float
    loss_new: float

    @property
    def slope_change(self) -> float:
        return self.w_new - self.w

    @property
    def steeper(self) -> bool:
        return abs(self.w_new) > abs(self.w)

    @property
    def elbow_move(self) -> str:
        d = self.elbow_new - self.elbow
        return "none" if abs(d) < 1e-15 else ("right" if d > 0 else "left")


def sgd_step(w: float, b: float, x: float, y: float, lam: float, case: str = "") -> StepResult:
    """One SGD step on the single unit, gradients from torch autograd."""
    import torch

    wt = torch.tensor(w, dtype=torch.float64, requires_grad=True)
    bt = torch.tensor(b, dtype=torch.float64, requires_grad=True)

    def loss_of(wv, bv):
        return 0.5 * (torch.relu(wv * x + bv) - y) ** 2

    loss = loss_of(wt, bt)
    gw, gb = torch.autograd.grad(loss, (wt, bt))
    loss = loss.detach()
    w2, b2 = w - lam * float(gw), b - lam * float(gb)
    with torch.no_grad():
        loss2 = float(loss_of(torch.tensor(w2, dtype=torch.float64),
                              torch.tensor(b2, dtype=torch.float64)))
    return StepResult(case, w, b, x, y, lam, float(gw), float(gb), w2, b2,
                      -b / w, -b2 / w2, float(loss), loss2)


def part_a_residual(trials: int = 200, seed: int = 0) -> float:
    """Max |autograd - formula| for dl/dw = (phi - y) x 1[wx+b>0] and dl/db = (phi - y) 1[.]."""
    import random

    rng = random.Random(seed)
    worst = 0.0
    for _ in range(trials):
        w, b, x, y = (rng.uniform(-3, 3) for _ in range(4))
        s = sgd_step(w, b, x, y, 0.1)
        z = w * x + b
        phi = max(z, 0.0)
        act = 1.0 if z > 0 else 0.0
        worst = max(worst, abs(s.dl_dw - (phi - y) * x * act), abs(s.dl_db - (phi - y) * act))
    return worst


def four_cases(sign: float = 1.0, lam: float = 0.1) -> list[StepResult]:
    """One concrete example per case of part (b), with phi(x) - y = sign."""
    examples = [
        ("(i)   phi(x) = 0", 1.0, -2.0, 1.0),
        ("(ii)  w>0, x>0", 1.0, 0.5, 1.0),
        ("(iii) w>0, x<0", 1.0, 2.0, -1.0),
        ("(iv)  w<0, x>0", -1.0, 2.0, 0.5),
    ]
    out = []
    for name, w, b, x in examples:
        phi = max(w * x + b, 0.0)
        out.append(sgd_step(w, b, x, phi - sign, lam, name))
    return out


def worked_example() -> StepResult:
    return sgd_step(-2.0, 4.0, 1.0, 1.0, 0.1, "worked: lam=0.1 x=1 y=1 w=-2 b=4")


@dataclass
class SweepResult:
    samples: int
    ii_slope_shallower: float       # fraction of samples where w' < w
    ii_elbow_rule: float            # fraction where "right iff (b - w/x)(lam - w/x) > 0" holds
    ii_right: int                   # how many moved right (both outcomes occur)
    iii_steeper_right: float        # fraction with |w'| > |w| and e' > e
    iv_steeper_left: float          # fraction with |w'| > |w| and e' < e
    loss_falls_small_step: float    # over ii-iv with lam (1 + x^2) < 2: fraction where loss fell
    loss_rises_big_step: float      # lam (1 + x^2) > 2, unit still active: fraction loss rose
    n_small: int
    n_big: int


def sweep(samples: int = 400, seed: int = 1) -> SweepResult:
    """Random (w, b, x, lam) per case with phi(x) - y = 1: how often each claim holds.

    Plain floats (the gradients are (x, 1) on an active unit); part (a) already ties
    these to autograd. The loss claim has problem 1's condition: on an active unit the
    new residual is ``1 - lam (1 + x^2)``, so the loss falls iff ``lam (1 + x^2) < 2``
    (the step is "small enough not to diverge") and rises past it.
    """
    import random

    rng = random.Random(seed)

    def step(w, b, x, lam):
        w2, b2 = w - lam * x, b - lam
        phi = max(w * x + b, 0.0)
        y = phi - 1.0
        loss2 = 0.5 * (max(w2 * x + b2, 0.0) - y) ** 2
        return w2, b2, -b / w, -b2 / w2, loss2

    ok_shallow = ok_rule = n_right = ok3 = ok4 = 0
    small = big = falls = rises = 0

    def tally(w2, b2, x, lam, loss2):
        nonlocal small, big, falls, rises
        k = lam * (1 + x * x)
        if k < 2 - 1e-9:
            small += 1
            falls += loss2 < 0.5
        elif k > 2 + 1e-9 and w2 * x + b2 > 0:
            big += 1
            rises += loss2 > 0.5

    for _ in range(samples):
        # (ii)
        w, x = rng.uniform(0.1, 3), rng.uniform(0.1, 3)
        b = -w * x + rng.uniform(1e-3, 4)
        lam = rng.uniform(0.01, 3)
        if abs(lam - w / x) < 1e-9:
            lam += 1e-3
        w2, b2, e, e2, loss2 = step(w, b, x, lam)
        ok_shallow += w2 < w
        right = e2 > e
        n_right += right
        ok_rule += right == ((b - w / x) * (lam - w / x) > 0)
        tally(w2, b2, x, lam, loss2)
        # (iii)
        w, x = rng.uniform(0.1, 3), -rng.uniform(0.1, 3)
        b = -w * x + rng.uniform(1e-3, 4)
        lam = rng.uniform(0.01, 1)
        w2, b2, e, e2, loss2 = step(w, b, x, lam)
        ok3 += abs(w2) > abs(w) and e2 > e
        tally(w2, b2, x, lam, loss2)
        # (iv)
        w, x = -rng.uniform(0.1, 3), rng.uniform(0.1, 3)
        b = -w * x + rng.uniform(1e-3, 4)
        lam = rng.uniform(0.01, 1)
        w2, b2, e, e2, loss2 = step(w, b, x, lam)
        ok4 += abs(w2) > abs(w) and e2 < e
        tally(w2, b2, x, lam, loss2)
    return SweepResult(samples, ok_shallow / samples, ok_rule / samples, n_right,
                       ok3 / samples, ok4 / samples, falls / max(small, 1),
                       rises / max(big, 1), small, big)


@dataclass
class NetworkCheck:
    trials: int
    units: int
    active_units: int
    max_rel_residual: float     # |e'_formula - e'_autograd| / (1 + |e'|)
    inactive_unchanged: bool


def network_elbows(d: int = 8, trials: int = 50, lam: float = 0.05,
                   seed: int = 0) -> NetworkCheck:
    """Parts (c)-(d): the closed-form new elbows against one autograd SGD step."""
    import torch

    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    active = 0
    unchanged = True
    for _ in range(trials):
        w1 = torch.randn(d, dtype=torch.float64, generator=g).requires_grad_(True)
        b = torch.randn(d, dtype=torch.float64, generator=g).requires_grad_(True)
        w2 = torch.randn(d, dtype=torch.float64, generator=g).requires_grad_(True)
        x = float(torch.randn(1, dtype=torch.float64, generator=g))
        y = float(torch.randn(1, dtype=torch.float64, generator=g))
        fx = w2 @ torch.relu(w1 * x + b)
        loss = 0.5 * (fx - y) ** 2
        gw1, gb, _ = torch.autograd.grad(loss, (w1, b, w2))
        with torch.no_grad():
            e_new_auto = -(b - lam * gb) / (w1 - lam * gw1)
            r = float(fx) - y
            on = (w1 * x + b) > 0
            e_formula = torch.where(on, (-b + lam * r * w2) / (w1 - lam * x * r * w2), -b / w1)
            worst = max(worst, float(((e_formula - e_new_auto).abs()
                                      / (1 + e_new_auto.abs())).max()))
            active += int(on.sum())
            unchanged &= bool(torch.equal(e_new_auto[~on], (-b / w1)[~on]))
    return NetworkCheck(trials, d, active, worst, unchanged)


def _print_steps(rows: list[StepResult]) -> None:
    print(f"  {'case':34s} {'dl/dw':>6s} {'dl/db':>6s} {'w -> w_new':>15s} {'slope':>9s} "
          f"{'elbow -> new':>16s} {'moves':>6s} {'loss -> new':>15s}")
    for s in rows:
        slope = "same" if s.slope_change == 0 else ("steeper" if s.steeper else "shallower")
        print(f"  {s.case:34s} {s.dl_dw:6.2f} {s.dl_db:6.2f} {s.w:6.2f} -> {s.w_new:5.2f} "
              f"{slope:>9s} {s.elbow:6.3f} -> {s.elbow_new:6.3f} {s.elbow_move:>6s} "
              f"{s.loss:6.3f} -> {s.loss_new:5.3f}")


def main() -> None:
    print(f"Problem 4 (a): autograd vs the gradient formulas, max |diff| = "
          f"{part_a_residual():.1e}")
    print("(b) one SGD step, lam = 0.1, phi(x) - y = +1 (too high):")
    _print_steps(four_cases(+1.0) + [worked_example()])
    print("    and phi(x) - y = -1 (too low): every move reverses, the dead unit still learns "
          "nothing")
    _print_steps(four_cases(-1.0))
    s = sweep()
    print(f"  random sweep, {s.samples} draws per case (phi - y = +1):")
    print(f"    (ii)  slope shallower {s.ii_slope_shallower:.0%}; elbow right iff "
          f"(b - w/x)(lam - w/x) > 0 in {s.ii_elbow_rule:.0%} (moved right {s.ii_right}x, "
          f"left {s.samples - s.ii_right}x)")
    print(f"    (iii) steeper and elbow right {s.iii_steeper_right:.0%};   (iv) steeper and "
          f"elbow left {s.iv_steeper_left:.0%}")
    print(f"    loss fell in {s.loss_falls_small_step:.0%} of {s.n_small} steps with "
          f"lam (1 + x^2) < 2, rose in {s.loss_rises_big_step:.0%} of {s.n_big} active steps "
          "past it (problem 1's condition)")
    n = network_elbows()
    print(f"(c)-(d) network, {n.units} units x {n.trials} draws ({n.active_units} active): "
          f"closed-form e_i' vs autograd step, max rel residual {n.max_rel_residual:.1e}; "
          f"inactive elbows unchanged: {n.inactive_unchanged}")


if __name__ == "__main__":
    main()
