"""Tone placement: off the probe's bad rate ratios, and never pushed out of the band."""

from hostctl.plan import BAND, _well_sampled, round_tone


def test_band_edges_stay_inside_for_every_probe_rate() -> None:
    """20 kHz at 5750 rounds/s (x = 3.478, near 7/2) once became 20010 Hz: not played."""
    lo, hi = BAND
    moved = 0
    for rate in range(5000, 6500):
        for f in (lo, hi):
            g = round_tone(f, float(rate))
            assert lo <= g <= hi, (f, rate, g)
            moved += g != f
    assert round_tone(hi, 5750.0) < hi and _well_sampled(round_tone(hi, 5750.0) / 5750.0, 1000)
    assert moved > 10          # the edges really needed nudging at some rates


def test_tones_outside_the_band_are_still_nudged_freely() -> None:
    g = round_tone(25000.0, 10000.0)       # x = 2.5: a bad ratio, moved either way
    assert g != 25000.0 and _well_sampled(g / 10000.0, 1000)
