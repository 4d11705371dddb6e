"""The LED estimate where the data are consistent: the exact region first, one stage after.

Why a module of its own: the annealed probit (engine._fit_leds) is built for noisy LED
data, where it decides which observations are noise. Noise-free data (the course
notebook's, a simulator's) need none of that: every value inside the data-consistent
region reproduces every observation, and the annealing's answer is the optimum of its
last stage inside that region. Computing the region first and running that stage alone
gives the same intervals at a fraction of the cost (issue 18: the notebook's LED fit).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from hostctl.fit.led import _led_intervals_all, _near_switch, _on_channels
from hostctl.fit.lm import _lm
from hostctl.fit.problem import _Problem
from hostctl.fit.settings import LED_LAPSE, SIGMA_SCHEDULE
from hostctl.fit.starts import _grid_range, _groups, _switch_rows
from hostctl.fit.vertices import _logh_plain, _numpy


def _fit_leds_consistent(run: Any, led_only: list) -> dict | None:
    """LED-only data that some values reproduce exactly (noise-free, like the notebook's):
    the exact consistent region first (every row accepted), then the annealing's last
    stage alone, from the region's centre. The annealing ends at that stage's optimum;
    started inside the region it needs none of the coarse stages nor the multi-start
    (the notebook's data: 80 -> 25 ms of CPU side by side at a load of ~10, the intervals
    the same to 1e-14). None -- the annealing runs -- when the data contradict
    every value (noise), a region is open or the estimate does not land inside it.

    Returns per group (its resistors) what :func:`_led_interval` gives at the estimate:
    every row is accepted there too, and the search box is the same (the grid's span)."""
    prob = run.prob
    if prob.ng or prob.est_t or len(led_only) != len(_groups(prob)) or any(
            len(ks) > 2 or not _on_channels(prob.chl, ch).any() for ks, ch in led_only):
        return None
    # the tones beside each switch and at each end (noise-free data: the others only
    # confirm) judge the grid where Newton starts for the region's vertices
    chans = set(prob.chl.tolist())
    ends = [r for c in chans for r in _channel_ends(prob, c)]
    rows = np.union1d(_switch_rows(prob, chans), ends)
    start = _region_start(prob, run.theta, led_only, rows)
    theta, known = start.copy(), {}
    for (ks, _), (ivs, nr, msgs) in zip(led_only, _led_intervals_all(prob, start, led_only,
                                                                      True), strict=True):
        if not ivs or not all(math.isfinite(a) and math.isfinite(b) for a, b in ivs.values()):
            return None
        for k, (lo, hi) in ivs.items():
            theta[k] = 0.5 * (lo + hi)
        known[tuple(ks)] = (ivs, nr, msgs)
    sigma = SIGMA_SCHEDULE[-1]
    sp = _near_switch(prob, theta[None], sigma)
    tb, _, Ab, db, it = _lm(lambda th: sp.objective(th, sigma=sigma, s_gain=run.s_gain,
                                                     lapse=LED_LAPSE),
                            theta[None], max_iter=40, xtol=1e-8, ftol=1e-12)
    th = tb[0]
    for ivs, _, _ in known.values():
        for k, (lo, hi) in ivs.items():
            grid = _grid_range(prob, k)
            if not (lo <= th[k] <= hi and grid[0] <= th[k] <= grid[-1]):
                return None
    L, _ = prob.model.logh(th[None, :len(prob.free)], prob.omega, prob.ch, jac=False)
    if (prob.sgn * (L[0] - prob.log_t - prob.lvl) < -1e-12).any():
        return None   # a row the estimate misreads: the annealing decides what is noise
    run.theta, run.A, run.iters = th, Ab, run.iters + it
    run.converged &= bool(db[0])
    run.method = "led-interval"
    return known


def _region_start(prob: _Problem, base: np.ndarray, led_only: list, rows: np.ndarray
                  ) -> np.ndarray:
    """Per group, the point of its coarse grid (:func:`_grid_range`, others at ``base``)
    that misreads the LED ``rows`` least (summed log distance to the threshold on the
    wrong side: noise-free data are all read right inside the region, where the region's
    vertices are near). Every group's grid in one model call of the numpy program; the
    annealing's probit grid (``_grid_starts``) picks the same point on the notebook's
    data and gives the same intervals on 252 data sets of 7 circuits, at 2.5x the cost."""
    pts = []
    for ks, _ in led_only:
        mesh = np.meshgrid(*[_grid_range(prob, k) for k in ks], indexing="ij")
        th = np.repeat(base[None, :len(prob.free)], mesh[0].size, 0)
        th[:, ks] = np.stack([m.reshape(-1) for m in mesh], -1)
        pts.append(th)
    L = _logh_plain(prob.model, np.concatenate(pts), _numpy(prob.omega)[prob.ng + rows],
                    _numpy(prob.ch)[prob.ng + rows])
    miss = np.maximum(0.0, -prob.sgn[rows] * (L - prob.log_t - prob.lvl[rows]))
    start, i0 = base.copy(), 0
    for (ks, chans), th in zip(led_only, pts, strict=True):
        cost = miss[i0:i0 + len(th), _on_channels(prob.chl[rows], chans)].sum(1)
        start[ks] = th[int(np.argmin(cost)), ks]
        i0 += len(th)
    return start


def _channel_ends(prob: _Problem, c: int) -> list[int]:
    """The LED rows of channel ``c`` at its lowest and highest tone."""
    sel = np.flatnonzero(prob.chl == c)
    return [int(sel[np.argmin(prob.freq_l[sel])]), int(sel[np.argmax(prob.freq_l[sel])])]
