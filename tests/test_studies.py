"""The homework's claims (EECS 182 HW0, problems 1-5), checked on the studies' numbers."""

import math

import numpy as np
import pytest

from sims.studies import (
    p1_gd_stability as p1,
)
from sims.studies import (
    p2_ridge_augmentation as p2,
)
from sims.studies import (
    p3_vector_calculus as p3,
)
from sims.studies import (
    p4_relu_elbow as p4,
)
from sims.studies import (
    p5_color_organ as p5,
)

# --- problem 1 --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def r1():
    return p1.run()


def test_p1_norm_grows_by_at_most_eta_alpha_y_at_every_step(r1):
    g = r1.gd
    assert len(g.step_slack) == 2000
    assert g.inequality_holds
    assert g.step_slack.min() >= 0.0
    assert g.alpha == pytest.approx(5.0, rel=1e-12)   # alpha is sigma_max(F)


def test_p1_error_at_most_linear_and_in_fact_bounded(r1):
    g = r1.gd
    assert np.all(g.errors <= g.linear_bound + 1e-12)
    # GD never leaves the ball around w* it started on, and ends at the invisible part
    assert g.errors.max() <= r1.w_star_norm + 1e-12
    assert g.errors[-1] == pytest.approx(r1.invisible_component, rel=1e-3)


def test_p1_inverse_explodes_while_gd_does_not(r1):
    assert r1.inverse_error > 1e6                       # noise 1e-3 / sigma_min 1e-10
    assert r1.gd.errors[-1] < 1.0
    sweep = {nz: (inv, gd) for nz, inv, gd in r1.noise_sweep}
    # the inverse's error is the noise times 1/sigma_min: linear in the noise
    assert sweep[1e-3][0] / sweep[1e-6][0] == pytest.approx(1e3, rel=1e-3)
    # GD's error moves by at most noise / (smallest singular value it can see, 0.2)
    for nz in (1e-9, 1e-6, 1e-3):
        assert abs(sweep[nz][1] - sweep[0.0][1]) <= nz / 0.2


def test_p1_the_small_step_hypothesis_is_needed(r1):
    b = r1.gd_unstable                                  # eta = 2.5/alpha^2 > 2/alpha^2
    assert b.first_violation is not None
    assert b.norms[-1] > 1e6


# --- problem 2 --------------------------------------------------------------------------


def test_p2_ridge_equals_ols_on_augmented_data():
    cases = p2.identity_cases()
    assert len(cases) == 4
    for c in cases:
        assert c.max_abs_diff < 1e-10, c.name
        assert c.shrink < 1.0, c.name                   # the prior pulls toward 0


def test_p2_any_square_root_of_sigma_inverse_works():
    # the Cholesky factor and a rotated copy Q Gamma give the same answer
    for seed in range(3):
        c = p2.identity_cases(seed=seed)
        assert c[1].shrink == pytest.approx(c[2].shrink, rel=1e-12)


@pytest.fixture(scope="module")
def prior():
    return p2.prior_study()


def test_p2_log_resistor_prior_is_appended_rows(prior):
    assert prior.linear_max_diff < 1e-10               # closed-form MAP == augmented LS
    assert prior.nonlinear_max_rel_diff < 1e-6         # iterated rows == -log posterior min
    # the prior moves every estimate toward nominal relative to the data-only fit
    for k in prior.resistors:
        lo, hi = sorted((prior.no_prior[k], prior.nominal[k]))
        assert lo - 1e-9 <= prior.gn_map[k] <= hi + 1e-9, k


def test_p2_hostctl_fit_prior_matches_augmented_least_squares():
    res = p2.hostctl_prior_check()
    if isinstance(res, str):
        pytest.skip(res)
    for c in res:
        assert c.rel_diff < 1e-8, c.label
    unreachable = res[0]
    # data alone would send R_low to 0; the prior rows hold it at nominal minus 0.02%
    assert unreachable.hostctl == pytest.approx(p2.PRIOR_NOMINAL * math.exp(-1.99e-4),
                                                rel=2e-6)


# --- problem 3 --------------------------------------------------------------------------


def test_p3_identities_hold_against_autograd():
    checks = {c.part: c for c in p3.check_identities()}
    for part in ("a", "b", "c", "d", "e"):
        assert checks[part].max_residual < 1e-10, part
    # and (e)'s condition matters: 2 x^T A is wrong for a non-symmetric A
    assert checks["e'"].max_residual > 0.1


# --- problem 4 --------------------------------------------------------------------------


def test_p4_gradient_formulas_match_autograd():
    assert p4.part_a_residual() < 1e-12


def test_p4_four_cases_of_part_b():
    i, ii, iii, iv = p4.four_cases(+1.0)
    assert (i.dl_dw, i.dl_db, i.slope_change, i.elbow_move) == (0.0, 0.0, 0.0, "none")
    assert ii.slope_change < 0 and not ii.steeper               # shallower
    assert iii.steeper and iii.elbow_move == "right"
    assert iv.steeper and iv.elbow_move == "left"
    for s in (ii, iii, iv):
        assert s.loss_new < s.loss
    # too low instead of too high: every move reverses
    _, ii_, iii_, iv_ = p4.four_cases(-1.0)
    assert ii_.steeper and ii_.elbow_move == "left"
    assert not iii_.steeper and iii_.elbow_move == "left"
    assert not iv_.steeper and iv_.elbow_move == "right"


def test_p4_worked_example_slope_wrong_way_error_falls():
    s = p4.worked_example()
    assert (s.dl_dw, s.dl_db) == (1.0, 1.0)
    assert s.w_new == pytest.approx(-2.1, abs=1e-15)
    assert s.slope_change < 0 and s.steeper                     # the "wrong" way
    assert s.loss == pytest.approx(0.5) and s.loss_new == pytest.approx(0.32, abs=1e-12)
    assert s.loss_new - s.loss < 0
    assert s.elbow == 2.0 and s.elbow_new == pytest.approx(3.9 / 2.1, abs=1e-12)


def test_p4_sweep_confirms_the_rules():
    s = p4.sweep()
    assert s.ii_slope_shallower == 1.0
    assert s.ii_elbow_rule == 1.0
    assert 0 < s.ii_right < s.samples                           # both directions happen
    assert s.iii_steeper_right == 1.0 and s.iv_steeper_left == 1.0
    assert s.loss_falls_small_step == 1.0 and s.n_small > 100
    assert s.loss_rises_big_step == 1.0 and s.n_big > 10


def test_p4_network_elbow_formula_matches_autograd_step():
    n = p4.network_elbows()
    assert n.max_rel_residual < 1e-10
    assert n.inactive_unchanged
    assert 0 < n.active_units < n.units * n.trials


# --- problem 5 --------------------------------------------------------------------------


def test_p5_notebook_models_are_hostctls_circuits():
    import torch

    from hostctl.circuits import get_circuit

    f = p5.tones(200, seed=3)
    for name in ("lowpass", "highpass", "bandpass", "color-organ"):
        mine = p5.true_response(name, f)
        circ = get_circuit(f"{name}-ideal")     # the notebook's math: no probe front end
        theirs = circ.response(f, p5.TRUTH, p5.C)
        stacked = torch.stack([theirs[ch] for ch in circ.channels]).reshape(mine.shape)
        assert float((mine - stacked).abs().max()) < 1e-12, name


def test_p5_band_pass_led_window_and_peak():
    f = np.logspace(2, 4, 20001)
    h = p5.true_response("bandpass", f).numpy()
    assert h.max() == pytest.approx(0.8, abs=1e-4)
    assert f[h.argmax()] == pytest.approx(2000.0, rel=1e-3)
    lit = f[h > p5.THRESHOLD]
    assert lit.min() == pytest.approx(1075, rel=2e-3) and lit.max() == pytest.approx(3721, rel=2e-3)


@pytest.fixture(scope="module")
def nb():
    return p5.run_notebook(seed=0, mode="fast")


def _inside(value, lo, hi, margin=0.0):
    return lo * (1 - margin) <= value <= hi * (1 + margin)


def test_p5_c_amplitude_data(nb):
    c = nb["c"]
    assert c.run.converged and c.run.steps < 200 and c.run.lr == 1e5
    assert _inside(c.reported["R_low"], *p5.DOCUMENTED["c"]["R_low"])
    # the notebook's rate (lr 200) is still far after 2000 of its ~45,000 steps
    capped = nb["c-capped"]
    assert not capped.run.converged and capped.reported["R_low"] > 450


def test_p5_d_to_g_documented_ranges(nb):
    for part in ("d", "e", "f"):
        for k, (lo, hi) in p5.DOCUMENTED[part].items():
            assert nb[part].run.converged
            assert _inside(nb[part].reported[k], lo, hi), (part, k, nb[part].reported[k])
    # (g): with seed 0 R_band_low is 35.93, 0.2% under the notes' 36: the ranges were read
    # off a few public runs; they are checked here with a 1% margin
    for part in ("g", "g-far"):
        for k, (lo, hi) in p5.DOCUMENTED["g"].items():
            assert _inside(nb[part].reported[k], lo, hi, 0.01), (part, k)
    # the tug of war: plain MSE on LED data is biased far above the truth
    assert nb["d"].reported["R_low"] > 1.5 * p5.TRUTH["R_low"]


def test_p5_h_bode_corners_are_pulled_inward(nb):
    h = nb["h"].reported
    assert _inside(h["f_hi"], *p5.DOCUMENTED["h"]["f_hi"], 0.01)   # 3852 with seed 0
    assert _inside(h["f_lo"], *p5.DOCUMENTED["h"]["f_lo"])
    assert h["f_hi"] < 4000 and h["f_lo"] > 1000


def test_p5_i_color_organ_errors_of_several_percent(nb):
    i = nb["i"]
    assert i.run.converged
    errs = {k: i.reported[k] / p5.TRUTH[k] - 1 for k in p5.TRUTH}
    assert max(abs(e) for e in errs.values()) > 0.03
    assert all(abs(e) < 0.15 for e in errs.values())
    # the joint fit lands where the single-filter fits did
    assert i.reported["R_high"] == pytest.approx(nb["f"].reported["R_high"], rel=1e-3)


@pytest.mark.parametrize("seed", [1, 2])
def test_p5_qualitative_claims_hold_for_other_tone_draws(seed):
    r = p5.run_notebook(seed=seed, parts=("d", "e", "h"))
    assert r["d"].reported["R_low"] > 1.5 * p5.TRUTH["R_low"]
    assert abs(r["e"].reported["R_low"] / p5.TRUTH["R_low"] - 1) < 0.1
    assert r["h"].reported["f_hi"] < 4000 and r["h"].reported["f_lo"] > 1000


@pytest.fixture(scope="module")
def host():
    res = p5.hostctl_answers(seed=0)
    if isinstance(res, str):
        pytest.skip(res)
    return res


def test_p5_hostctl_on_the_same_data_beats_the_notebook(nb, host):
    for part in ("c", "d", "e", "f", "g", "i"):
        a = host[part]
        assert not isinstance(a, str), a
        for k in nb[part].reported:
            lo, hi = a.ci95[k]
            t = p5.TRUTH[k]
            assert lo <= t <= hi, (part, k, a.ci95[k])          # the interval holds the truth
            assert abs(a.values[k] / t - 1) <= abs(nb[part].reported[k] / t - 1) + 1e-9, \
                (part, k)
        # how long it took is the benchmarks' business (ratios to a peer), not a test's


def test_p5_hostctl_band_pass_corners_from_gain_data(host):
    a = host["h"]
    assert not isinstance(a, str), a
    assert a.corner_hz["R_band_low"] == pytest.approx(4000.0, rel=1e-6)
    assert a.corner_hz["R_band_high"] == pytest.approx(1000.0, rel=1e-6)


def test_p5_hostctl_teaching_mode_reproduces_the_notebook_loop(nb):
    tm = p5.teaching_mode_check(nb, seed=0)
    if isinstance(tm, str):
        pytest.skip(tm)
    assert set(tm) == {"c", "d", "e", "f"}
    for part, (mine, theirs) in tm.items():
        assert theirs == pytest.approx(mine, rel=1e-6), part


@pytest.mark.slow
def test_p5_c_at_the_notebooks_rate_takes_tens_of_thousands_of_steps():
    """lr 200 from 500 ohm: ~45,000 steps (the homework says 45,000-50,000)."""
    freq = p5.tones(1000, 0)
    run = p5._single(freq, "lowpass", p5.true_response("lowpass", freq), p5.mse, 200.0,
                     {"R_low": 500.0}, 100_000)
    assert run.converged
    assert 40_000 <= run.steps <= 55_000                        # 44,554 with seed 0
    assert _inside(run.values["R_low"], *p5.DOCUMENTED["c"]["R_low"])
