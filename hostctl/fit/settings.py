"""Constants of the fit engine: noise scales, trust limits, quantiles."""

from __future__ import annotations

import math

LOSSES = ("auto", "notebook-mse", "notebook-weighted")

Z95 = 1.959963984540054

LN10_20 = math.log(10.0) / 20.0

#: probit noise scales (in log|H| units) for the annealing, coarse to fine
SIGMA_SCHEDULE = (0.3, 0.1, 0.03, 0.01, 0.003, 0.001)

#: a start whose fit leaves an rms log error above this triggers the multi-start search
MISFIT_RMS = 0.05

#: a channel whose gains the final fit misses by more than this (rms, log) is not this model
MISFIT_TRUST = 0.15

#: an LED channel with more of its observations rejected than this is not this model
LED_MISFIT_FRACTION = 0.1

#: smallest gain noise scale (log units) used to weigh gain rows against LED rows / priors
S_GAIN_FLOOR = 1e-6

#: the MAP fit (cost = half a chi-square at unit noise) stops when a full Gauss-Newton step
#: promises less than this: a step of ~1e-5 of a standard deviation
MAP_GAIN_ABS = 1e-10

#: probability that an LED observation is simply wrong (robust probit). The coarsest
#: annealing stage runs without it: a pure probit still pulls from far-off starts where
#: every observation is wrong, which a bounded loss would not
LED_LAPSE = 1e-3

#: margin (in log R) around the coarse grid's span for the LED interval search box
BOX = 5.0


#: how far the probe's own noise figures (``gain_se``) may be off: the measured scatter of
#: gains agrees with them to within this factor (tests/test_noise.py); a misfit must beat it
NOISE_FIGURE_TOL = 1.15

#: a model whose chi-square exceeds its upper 0.1 % point (after NOISE_FIGURE_TOL) is
#: contradicted by the data: the goodness-of-fit test's false-alarm rate
GOF_ALPHA = 1e-3

#: a nuisance part fitted farther than this from its prior (in its prior's sigma) means the
#: model needs an implausible part to fit: the data contradict it
PRIOR_Z_LIMIT = 4.0

#: a channel whose gains miss the model by more than this many times the measured noise
#: (rms), and significantly so, is not this circuit; smaller excess widens the intervals
MISFIT_SIGMA = 3.0

#: a capacitor the user measured and named (--capacitance C_low=...): the meter's relative
#: error, the width of its S_x prior instead of the part's tolerance
MEASURED_C = 0.01
