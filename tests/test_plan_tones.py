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


# --- windows sized to the reading, LED brackets split where the LED switches (issue 18) ---

import math  # noqa: E402
from dataclasses import replace  # noqa: E402

from hostctl import plan  # noqa: E402
from hostctl.dataset import Measurement  # noqa: E402

RATE = 5751.0           # the probe's rounds per second (firmware/README.md)


def test_windows_hold_20_cycles_and_cover_the_tones_phases() -> None:
    """Every planned tone's window holds 20 cycles of it and enough samples for its sample
    phases to spread as round_tone asks; an LED bit's window is about half an amplitude's."""
    for f in plan.log_sweep(241):
        g = round_tone(f, RATE, 1150)                # placed for a 200 ms window
        for floor in (plan.LED_WINDOW_MS, 200):
            ms = plan.window_ms(g, RATE, floor)
            n = math.ceil(ms * RATE / 1000)
            assert ms >= floor and ms * g / 1000 >= 20 - 1e-9, (g, ms)
            assert _well_sampled(g / RATE, n), (g, ms)
            assert ms <= max(200, 20_000 / g + 1), (g, ms)     # never longer than before
    mid = [round_tone(f, RATE, 1150) for f in plan.log_sweep(241) if f >= 300]
    led = sum(plan.window_ms(g, RATE, plan.LED_WINDOW_MS) for g in mid) / len(mid)
    assert led < 0.6 * 200, led          # an LED bit's window: about half an amplitude's


def _led_rows(freqs, fc: float, v_switch: float, amp: float = 1.0, scale: float = 1.0):
    """A first-order low-pass driving an LED that lights above ``v_switch``: the bit and
    the lit part of a cycle as the probe sees them; ``scale`` mis-states the amplitude
    (a wrong estimate must still end in a bracket round the true switch)."""
    out = []
    for f in freqs:
        v = amp / math.sqrt(1 + (f / fc) ** 2)
        lit = v > v_switch
        out.append(Measurement(f, "low", led=int(lit), vout_v=v * scale, level_dbfs=-6.0,
                               led_fraction=math.acos(v_switch / v) / math.pi if lit else 0.0))
    return out


def _tones_to_close(fc, v_switch, precision, *, estimate=True, scale=1.0):
    freqs = [round_tone(f, RATE, 1150) for f in plan.log_sweep(12)]
    if not estimate:
        saved = plan.switch_estimate
        plan.switch_estimate = lambda b, rows, past_ends=False: None
    try:
        n = 0
        while True:
            t = plan.next_led_tone(_led_rows(freqs, fc, v_switch, scale=scale), precision,
                                   lambda f: round_tone(f, RATE, 1150))
            if t is None:
                break
            freqs.append(t.frequency_hz)
            n += 1
            assert n < 40
    finally:
        if not estimate:
            plan.switch_estimate = saved
    (b,) = plan.led_brackets(_led_rows(freqs, fc, v_switch, scale=scale))
    return n, b


def test_led_brackets_close_in_four_or_five_tones_where_bisection_takes_seven() -> None:
    for fc, vs in ((796.0, 0.3), (180.0, 0.7), (4100.0, 0.5)):
        true = fc * math.sqrt(1 / vs ** 2 - 1)            # where the LED switches
        n, b = _tones_to_close(fc, vs, 0.006)
        n_bis, b_bis = _tones_to_close(fc, vs, 0.006, estimate=False)
        for br in (b, b_bis):
            assert br.lo_hz < true < br.hi_hz and br.log_width <= 0.006, (fc, vs, br)
        assert n <= 5 and n <= n_bis - 2, (fc, vs, n, n_bis)    # measured: 4-5 vs 7


def test_a_wrong_estimate_still_closes_round_the_true_switch() -> None:
    """The amplitudes only place tones: mis-stated by 20 %, the LED bits still decide."""
    for scale in (0.8, 1.25):
        true = 796.0 * math.sqrt(1 / 0.3 ** 2 - 1)
        n, b = _tones_to_close(796.0, 0.3, 0.006, scale=scale)
        assert b.lo_hz < true < b.hi_hz and b.log_width <= 0.006
        assert n <= 7, n                                       # measured: 4


def test_independent_brackets_are_split_together_and_each_tone_is_the_single_choice() -> None:
    """next_led_tones gives each bracket (channel, level) the tone next_led_tone would give it
    alone, widest first -- so a batch of them can be queued back to back and every bracket
    still closes round its switch."""
    place = lambda f: round_tone(f, RATE, 1150)             # noqa: E731
    freqs = [place(f) for f in plan.log_sweep(12)]
    low = _led_rows(freqs, 796.0, 0.3)
    band = [Measurement(m.frequency_hz, "band", led=m.led, vout_v=m.vout_v, level_dbfs=-6.0,
                        led_fraction=m.led_fraction) for m in _led_rows(freqs, 3100.0, 0.45)]
    quiet = [Measurement(m.frequency_hz, "low", led=m.led, vout_v=m.vout_v, level_dbfs=-12.0,
                         led_fraction=m.led_fraction) for m in _led_rows(freqs, 796.0, 0.6)]
    rows = low + band + quiet
    tones = plan.next_led_tones(rows, 0.006, place)
    alone = [plan.next_led_tone(r, 0.006, place) for r in (low, band, quiet)]
    assert sorted(tones, key=lambda t: (t.level_dbfs, t.frequency_hz)) == sorted(
        alone, key=lambda t: (t.level_dbfs, t.frequency_hz))
    widths = [next(b.log_width for b in plan.led_brackets(rows) if b.lo_hz < t.frequency_hz
                   < b.hi_hz and b.level_dbfs == t.level_dbfs) for t in tones]
    assert widths == sorted(widths, reverse=True)
    # queued in rounds until nothing is left, each bracket still closes round its switch
    truth = {("low", -6.0): (796.0, 0.3), ("band", -6.0): (3100.0, 0.45),
             ("low", -12.0): (796.0, 0.6)}
    played = list(freqs)
    for _ in range(10):
        batch = plan.next_led_tones(_all(played, truth), 0.006, place)
        if not batch:
            break
        played += [t.frequency_hz for t in batch]
    else:
        raise AssertionError("brackets did not close in 10 rounds")
    for b in plan.led_brackets(_all(played, truth)):
        fc, vs = truth[(b.channel, b.level_dbfs)]
        assert b.lo_hz < fc * math.sqrt(1 / vs ** 2 - 1) < b.hi_hz and b.log_width <= 0.006


def _all(freqs, truth):
    out = []
    for (ch, lvl), (fc, vs) in truth.items():
        out += [Measurement(m.frequency_hz, ch, led=m.led, vout_v=m.vout_v, level_dbfs=lvl,
                            led_fraction=m.led_fraction) for m in _led_rows(freqs, fc, vs)]
    return out


def test_the_second_level_plays_only_the_sweep_tones_its_switches_need() -> None:
    """An LED dark at the first level is dark 2 dB lower: the second level's sweep tones are
    each lit run's dark neighbour and its lit tones up to one whose lit fraction says it
    stays lit. Played in rounds they find every bracket the whole sweep would; a low-pass
    switching at 2.4 kHz needs 3 tones there, none of the slow low ones."""
    place = lambda f: round_tone(f, RATE, 1150)             # noqa: E731
    grid = [place(f) for f in plan.log_sweep(12)]
    step = 10 ** (-2 / 20)

    def rows_at(freqs, lvl, amp, cases):
        return [replace(m, channel=ch, level_dbfs=lvl) for ch, (fc, vs) in cases.items()
                for m in _led_rows(freqs, fc, vs, amp)]

    def second_level(cases):
        played: list[float] = []
        for _ in range(12):
            rows = rows_at(grid, -6.0, 1.0, cases) + rows_at(played, -8.0, step, cases)
            new = plan.second_level_tones(rows, -6.0, -8.0, grid)
            if not new:
                return played, rows
            assert all(t.level_dbfs == -8.0 and t.frequency_hz in grid
                       and t.frequency_hz not in played for t in new), new
            played += [t.frequency_hz for t in new]
        raise AssertionError("the second level's tones did not settle")

    def brackets(rows):
        return sorted((b.channel, b.lo_hz, b.hi_hz) for b in plan.led_brackets(rows)
                      if b.level_dbfs == -8.0)

    low = {"low": (796.0, 0.3)}
    played, rows = second_level(low)
    assert len(played) == 3 and min(played) > 800, played
    assert brackets(rows) == brackets(rows_at(grid, -8.0, step, low)) != []
    # lit by a hair at the first level (0.9 V of 1 V): every lit tone is tried, none lights
    both = {**low, "dim": (796.0, 0.9)}
    played, rows = second_level(both)
    assert brackets(rows) == brackets(rows_at(grid, -8.0, step, both))
    assert {f for f in grid if f < 300} <= set(played), played


def test_an_estimate_just_past_a_bracket_end_is_taken_at_that_end() -> None:
    """The switching level read off a few lit samples can put the estimate a little past
    the bracket: with ``past_ends`` the next tone goes beside that end (a tenth of the
    bracket in), without it the bracket is halved."""
    def row(f, lit, vout, v_over_a):
        return Measurement(f, "low", led=lit, vout_v=vout, level_dbfs=-6.0,
                           led_fraction=math.acos(v_over_a) / math.pi if lit else 0.0)

    # switching at 0.5 V x 0.88 = 0.44 V: below the dark end's 0.45 V, 1.2 brackets along
    rows = [row(900.0, 1, 0.55, 0.8), row(1000.0, 1, 0.5, 0.88), row(1100.0, 0, 0.45, 1)]
    (b,) = plan.led_brackets(rows)
    assert plan.switch_estimate(b, rows) is None
    assert plan.switch_estimate(b, rows, past_ends=True) == 1100.0
    assert plan.next_led_tone(rows, 0.006, past_ends=True).frequency_hz == 1090.0
    assert plan.next_led_tone(rows, 0.006).frequency_hz == 1049.0      # the midpoint
