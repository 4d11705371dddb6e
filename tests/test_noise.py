"""The gain chain against sines of known gain: no bias from quantisation, gain_se validated.

Sines go through the firmware's integer statistics and hostctl.measure exactly as on the
bench (sims/studies/noise_chain.py); the true gain is exact, so the numbers are the chain's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from hostctl import noise
from hostctl.dataset import COLUMNS, Measurement, MeasurementSet
from sims.studies import noise_chain as nc


@pytest.mark.parametrize("mu,amp,sigma", [
    (512.0, 0.0, 0.5), (512.3, 0.0, 0.2), (512.0, 3.078, 0.0), (512.25, 10.26, 0.0),
    (512.0, 3.078, 0.1), (512.4, 10.0, 0.3), (511.7, 30.0, 0.5), (512.0, 1.0, 0.05)])
def test_quantised_sine_moments_match_brute_force(mu, amp, sigma):
    rng = np.random.default_rng(1)
    th = (np.arange(2_000_000) + 0.5) / 2_000_000 * 2 * math.pi    # phases evenly
    x = np.floor(mu + amp * np.sin(th) + (rng.normal(0, sigma, th.size) if sigma else 0))
    m, v = noise.moments(mu, amp, sigma)
    assert m == pytest.approx(x.mean(), abs=2e-3)
    # up to the noise's own sampling error: 2 sqrt(S sigma^2 / N), 4 of them
    assert v == pytest.approx(x.var(), abs=2e-3 + 8 * math.sqrt(amp ** 2 / 2 * sigma ** 2
                                                                  / th.size))


@pytest.mark.parametrize("mu,sigma", [(512.0, 0.5), (512.3, 0.2), (512.7, 1.0), (512.1, 0.7)])
def test_noise_is_solved_from_the_silent_floor(mu, sigma):
    m, v = noise.moments(mu, 0.0, sigma)
    rms = math.floor(math.sqrt(v) * 1000) / 1000        # as the firmware prints it
    assert noise.silence_sigma(round(m, 3), rms) == pytest.approx(sigma, abs=0.01)
    # a flat noiseless input reads RMS 0: no noise
    assert noise.silence_sigma(512.0, 0.0) == 0.0


def test_small_gains_are_unbiased_where_the_floor_subtraction_was_not():
    """Old: RMS^2 minus the silent floor's RMS^2. Noiseless ADC: +0.5..+1.6 % on gains
    0.01-0.1; bench ADC (0.5 LSB) with the DC on a code edge: -0.1 % at 0.03, -1 % at 0.01."""
    clean = nc.run_case(nc.Case(1000.0, (0.01, 0.03, 0.1), noise_lsb=0.0), 60, seed=3)
    assert np.all(clean.bias(old=True) > 0.005)
    assert np.all(np.abs(clean.bias()) < 0.0005), clean.bias()
    noisy = nc.run_case(nc.Case(1000.0, (0.03, 0.03, 0.03), noise_lsb=0.5), 1500, seed=4)
    pooled_old, pooled = noisy.bias(old=True).mean(), noisy.bias().mean()
    mc_se = noisy.bias_se().mean() / math.sqrt(3)
    assert pooled_old < -4 * mc_se                        # the old bias, resolved
    assert abs(pooled) < 3 * mc_se, (pooled, mc_se)       # none now


@pytest.mark.parametrize("label,case", nc.SE_CASES, ids=[f"{lb} {c.gains}" for lb, c in
                                                        nc.SE_CASES])
def test_gain_se_predicts_the_scatter_within_15pct(label, case):
    emp, pred = nc.se_check(case, windows=800, seed=11)
    ratio = emp / pred
    assert np.all(np.abs(ratio - 1) < 0.15), (label, ratio)


@pytest.mark.parametrize("freq,ms", [(1000.0, 200), (131.6, 200), (20.0, 1000), (3040.0, 200)])
def test_gain_se_of_a_noiseless_adc_is_about_an_upper_bound(freq, ms):
    """No noise: the quantisation error is a fixed function of the phase (no model follows
    its scatter); gain_se counts it as random. At tones the plan plays (phases spread,
    plan.round_tone) the scatter measured 0.08-1.18x gain_se; at a tone it would move
    (1000 Hz at 5751/s sits near 4/23) up to 3.9x."""
    from hostctl import plan

    f = plan.round_tone(freq, nc.RATE_HZ, math.ceil(ms * 1e-3 * nc.RATE_HZ))
    emp, pred = nc.se_check(nc.Case(f, (1.0, 0.1, 0.03), noise_lsb=0.0, ms=ms), 480, seed=5)
    assert np.all(emp / pred < 1.3), emp / pred


def test_gain_se_column_round_trips_and_old_csvs_still_read():
    assert COLUMNS[-1] == "gain_se"
    ms = MeasurementSet([Measurement(1000.0, "low", gain=0.5, gain_se=0.0012)])
    back = MeasurementSet.parse_csv(ms.to_csv())
    assert back.rows[0].gain_se == 0.0012
    old = "frequency_hz,channel,gain,led,vin_v,vout_v,level_dbfs,led_fraction,time_s,flag\n" \
          "1000.0,low,0.5,,,,,,,\n"
    assert MeasurementSet.parse_csv(old).rows[0].gain_se is None


def test_resumed_old_session_keeps_its_header(tmp_path):
    from hostctl.sessionlog import Recorder, read_session

    p = tmp_path / "session.csv"
    p.write_text("# format: hostctl-session/1\nfrequency_hz,channel,gain,led,vin_v,vout_v,"
                 "level_dbfs,led_fraction,time_s,flag\n1000.0,low,0.5,,,,,,,\n")
    with Recorder(p, resume=True) as rec:
        rec.append([Measurement(2000.0, "low", gain=0.25, gain_se=0.001)])
    data = read_session(p)
    assert [m.gain for m in data] == [0.5, 0.25]
