"""Fit component values to measurements: gain data, LED data, or both.

Why it looks like this (and not like the course notebook):

* Parameters are ``log R``: corners live on a log axis, a 1% step means the same at 10 ohm
  and at 10 kohm, and no learning rate or start value is asked of anyone.
* Gain data: least squares on ``log|H_model| - log gain`` by Levenberg-Marquardt
  (damped Gauss-Newton). The Jacobian comes from torch autograd in reverse mode with
  *per-row copies* of every parameter: each row of the residual depends only on its
  own copy, so one backward pass of ``sum(residuals)`` yields every row's gradient,
  i.e. the whole Jacobian (the same numbers as ``torch.func.jacrev``, at the cost of
  one backward pass instead of one per row). Everything is batched over a leading
  dimension (several starts, or several boards in :func:`fit_many`).
* LED data are thresholded observations, not targets for a mean squared error: the LED
  is lit iff ``|H(f)| > t``. The estimate maximises a probit likelihood
  ``P(lit) = eps + (1 - 2 eps) Phi((log|H| - log t) / sigma)`` (``eps`` = 1e-3, a lapse
  rate, so one misread LED costs at most ``-log eps``) with ``sigma`` annealed from 0.3
  down to 0.001 in log|H| units; the optimum tends to the point with equal log-margins
  to the nearest on and off tones. The Newton/LM steps use the exact curvature of the
  link (IRLS), which converges in a handful of iterations per stage.
* The reported LED interval is the exact *data-consistent* set: every value in it
  reproduces all accepted LED observations. Its end points are vertices of the
  consistent region, found by Newton's method on ``|H(f_i)| = t`` for one (1-D
  sections) or two (band-pass: the region is bounded by the four curves of the tones
  on either side of the switch-on and switch-off) binding tones, kept only if they
  satisfy every other observation.
* Rule for noisy LED data: observations the probit estimate misclassifies are treated
  as noise (counted in ``FitResult.notes``); the interval is the consistent set of the
  remaining ("accepted") observations, so it always contains the estimate.
* Gain and LED rows together: one likelihood, gain residuals divided by their noise
  scale from a gain-only pilot fit (floored at 1 ppm), so gains dominate wherever
  they exist; resistors only LED rows see get the data-consistent interval.
* ``led_threshold="estimate"``: ``lit iff |H| * 10**(level_dbfs/20) > t_ref``, t_ref a
  free parameter; the LED intervals are profiled over every consistent t_ref."""

from hostctl.fit.batch import fit_many
from hostctl.fit.engine import fit
from hostctl.fit.lm import levenberg_marquardt
from hostctl.fit.model import shared_model
from hostctl.fit.problem import SwitchVoltage, build_problem, jacobian_reference, parse_prior
from hostctl.fit.result import FitResult
from hostctl.fit.settings import *  # noqa: F403
from hostctl.fit.settings import LOSSES, S_GAIN_FLOOR, Z95
from hostctl.fit.starts import default_start, linear_start

__all__ = ["FitResult", "SwitchVoltage", "fit", "fit_many", "parse_prior",
           "jacobian_reference", "LOSSES", "S_GAIN_FLOOR", "Z95",
           # the fit's parts, for code that compares them with a peer solver (benchmarks)
           "build_problem", "default_start", "levenberg_marquardt", "linear_start",
           "shared_model"]
