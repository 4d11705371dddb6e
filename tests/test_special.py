"""hostctl.fit.special against scipy.special (the outside reference): the fit's quantiles
and log Phi without scipy's 0.8 s of import (issue 18)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from hostctl.fit import special


def test_log_ndtr_matches_scipy_in_both_tails() -> None:
    from scipy.special import log_ndtr

    z = np.linspace(-60.0, 37.0, 20001)
    ref = log_ndtr(z)
    got = special.log_ndtr(z)
    assert got.shape == z.shape
    assert np.max(np.abs(got - ref) / np.maximum(np.abs(ref), 1e-300)) < 1e-9
    assert special.log_ndtr(np.array([-40.0]))[0] == pytest.approx(-804.6084420137538,
                                                                     rel=1e-14)


@pytest.mark.parametrize("dof", [1, 2, 3, 5, 10, 30, 99, 100, 101, 1000, 12345, 1e5, 2.5])
def test_student_t_quantile_matches_scipy(dof: float) -> None:
    from scipy.special import stdtrit

    for p in (0.975, 0.995, 0.6, 0.025, 0.9999):
        assert special.student_t_ppf(p, dof) == pytest.approx(float(stdtrit(dof, p)),
                                                                 rel=1e-11)


@pytest.mark.parametrize("k", [1, 2, 3, 4, 7, 30, 199, 200, 201, 3000, 12345, 1e5])
def test_chi2_upper_quantile_matches_scipy(k: float) -> None:
    from scipy.special import chdtri

    for q in (1e-6, 1e-3, 0.05, 0.5, 0.9):
        assert special.chi2_isf(q, k) == pytest.approx(float(chdtri(k, q)), rel=1e-12)


def test_out_of_range_is_nan_not_a_number_that_looks_right() -> None:
    assert math.isnan(special.student_t_ppf(1.0, 5))
    assert math.isnan(special.student_t_ppf(0.975, 0))
    assert math.isnan(special.chi2_isf(0.0, 3))
    assert special.student_t_ppf(0.5, 7) == 0.0
