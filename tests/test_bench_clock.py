"""The virtual bench's clock counts what a real bench waits (issue 18, point 1).

Per tone: the fades the sound card's synthesiser schedules, its output latency and the
settle time (the numbers hostctl.audio sleeps); and the host's own compute between its
requests. Asserted on the amounts charged (state), never on how fast anything ran.
"""

from __future__ import annotations

import json

import pytest

from hostctl import backtoback, calibrate
from hostctl.audio import FADE_S, OUTPUT_LATENCY_S, SETTLE_S, OutputBase
from hostctl.device import open_probe
from sims.bench import make_bench
from sims.tones import SimToneOutput


class FakeHostClock:
    """A process-time clock the test moves by hand (the host 'computes' ``step`` s)."""

    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_each_tone_charges_fades_latency_and_settle():
    bench = make_bench("notebook", 0)
    out = SimToneOutput(bench, count_host=False)
    assert (out.fade_s, out.latency_s, out.settle_s) == (FADE_S, OUTPUT_LATENCY_S, SETTLE_S)
    steps = []
    for action in (lambda: out.tone(1000.0, -6.0),     # from silence: one fade in
                   lambda: out.tone(2000.0, -6.0),     # another tone: fade out, fade in
                   lambda: out.tone(2000.0, -6.0),     # the same tone: no fade
                   lambda: out.tone(2000.0, -8.0),     # a level change: one ramp
                   lambda: out.silence(),              # fade out
                   lambda: out.silence()):             # silent at the jack already: nothing
        t, physics = bench.clock(), bench.now_s
        action()
        steps.append(bench.clock() - t)
        assert bench.now_s == physics          # the readings do not move for it
    tone, quiet = OUTPUT_LATENCY_S + SETTLE_S, OUTPUT_LATENCY_S
    assert steps == pytest.approx([FADE_S + tone, 2 * FADE_S + tone, tone, FADE_S + tone,
                                   FADE_S + quiet, 0.0], abs=1e-9)
    assert out.waited_s == pytest.approx(sum(steps)) == pytest.approx(bench.waited_s)
    assert bench.host_s == 0.0 and out.tones == 4


def test_silence_waits_only_until_the_jack_is_silent():
    """A new output has played nothing: silence() waits for nothing. After a tone it waits
    the fade-out and the latency; called again at once, nothing more."""
    bench = make_bench("notebook", 0)
    out = SimToneOutput(bench, count_host=False)
    t = bench.clock()
    out.silence()
    assert bench.clock() == t
    out.tone(1000.0, -6.0)
    t = bench.clock()
    out.silence()
    assert bench.clock() - t == pytest.approx(FADE_S + OUTPUT_LATENCY_S, abs=1e-9)
    c = out.cue(2000.0, -6.0, 0.2)             # cued, not yet waited on: not silent
    out.silence()                              # drops it; the fade it may have begun ...
    assert bench.clock() - t > FADE_S + OUTPUT_LATENCY_S    # ... is waited out
    assert c.freq_hz == 2000.0 and bench.tone_hz is None


def test_the_wait_formulas_are_the_sound_cards():
    """SoundDeviceOutput sleeps OutputBase's tone_wait_s / silence_wait_s after its fades:
    the virtual output charges the very same formulas."""
    base = OutputBase()
    n = round(FADE_S * base.sample_rate)
    assert base.tone_wait_s(n) == pytest.approx(FADE_S + OUTPUT_LATENCY_S + SETTLE_S)
    assert base.silence_wait_s(0) == pytest.approx(OUTPUT_LATENCY_S)


def test_host_compute_between_requests_is_charged_to_the_clock_not_the_physics():
    bench = make_bench("notebook", 0)
    host = FakeHostClock()
    bench.count_host(host)
    out = SimToneOutput(bench)               # already counted: the fake clock stays
    out.tone(800.0, -6.0)
    physics = bench.now_s
    host.t += 1.25                           # the host fits for 1.25 s of CPU
    r = bench.measure(200)
    assert r.ms >= 200
    assert bench.host_s == pytest.approx(1.25)
    assert bench.clock() == pytest.approx(bench.now_s + bench.waited_s + 1.25)
    # the physics did not move for the host: the window opened where it would have
    assert bench.now_s - physics < 0.25
    host.t += 0.5
    out.tone(900.0, -6.0)                    # a tone request charges it too
    assert bench.host_s == pytest.approx(1.75)
    assert bench.state()["host_s"] == pytest.approx(1.75)


def test_a_seed_reads_the_same_however_slow_the_host():
    """Host time is kept off the physics clock: the same seed gives the same readings."""
    def readings(host_step: float) -> list[float]:
        bench = make_bench("bench", 3)
        host = FakeHostClock()
        bench.count_host(host)
        got = []
        for f in (100.0, 1000.0):
            bench.set_tone(f)
            host.t += host_step
            got += [a.rms for a in bench.measure(100).analog]
        return got

    assert readings(0.0) == readings(3.0)


def test_calibrate_reports_bench_seconds_with_the_hosts_share(tmp_path, monkeypatch):
    fits = []
    real_fit = calibrate._Run.fit
    with open_probe("sim://?board=notebook&seed=0") as probe:
        bench = probe.serial.bench
        host = FakeHostClock()
        bench.count_host(host)

        def slow_fit(self):                  # each fit costs the host 0.5 s of CPU
            host.t += 0.5
            fits.append(1)
            return real_fit(self)

        monkeypatch.setattr(calibrate._Run, "fit", slow_fit)
        out = SimToneOutput(bench)
        cfg = calibrate.RunConfig(circuit=bench.circuit.name, mode="gain", max_tones=14,
                                  installed=dict(bench.board.resistors))
        clock0, waited0 = bench.clock(), out.waited_s
        res = calibrate.run(probe, out, cfg, tmp_path / "run")
        end = bench.clock()
    assert fits
    assert res.host_time_s == pytest.approx(0.5 * len(fits))
    assert res.bench_time_s == pytest.approx(end - clock0)
    # every tone waited its settle, the sweep's queue the latency once; all in the bench time
    assert out.waited_s - waited0 >= res.tones * SETTLE_S + OUTPUT_LATENCY_S
    assert res.bench_time_s > out.waited_s - waited0 + res.host_time_s
    rep = res.to_json()["run"]
    assert rep["host_time_s"] == res.host_time_s and rep["bench_time_s"] == res.bench_time_s
    json.dumps(rep)
    from hostctl.report import table
    assert f"{res.host_time_s:.1f} s of it host compute" in table(res, cols=200)


def test_cued_tones_pay_the_latency_once():
    """Tones queued together start where the one before ends its hold: the bench waits the
    output latency once, then each tone's fades, settle and hold."""
    bench = make_bench("notebook", 0)
    out = SimToneOutput(bench, count_host=False)
    t0 = bench.clock()
    holds = (0.3, 0.25, 0.4)
    cues = [out.cue(f, -6.0, h) for f, h in zip((200.0, 1000.0, 3000.0), holds, strict=True)]
    assert bench.clock() == t0                       # queuing waits for nothing
    for c in cues:
        out.wait(c)
        assert c.left_s() == pytest.approx(c.hold_s, abs=1e-9)
        assert bench.tone_hz == c.freq_hz
    want = (OUTPUT_LATENCY_S + FADE_S + SETTLE_S + holds[0] + 2 * FADE_S + SETTLE_S + holds[1]
            + 2 * FADE_S + SETTLE_S)
    assert bench.clock() - t0 == pytest.approx(want, abs=1e-9)
    # one at a time, each would have paid the latency again
    assert want < 3 * OUTPUT_LATENCY_S + sum(holds[:2]) + 5 * FADE_S + 3 * SETTLE_S
    out.silence()                                    # a queue is dropped by silence
    c = out.cue(500.0, -6.0, 0.1)
    assert c.settled_at - bench.clock() == pytest.approx(
        OUTPUT_LATENCY_S + FADE_S + SETTLE_S, abs=1e-9)


def test_a_missed_slot_is_played_again_and_nothing_is_read_across_a_change(tmp_path,
                                                                          monkeypatch):
    """A host too late for a queued tone's window (here: 1 s of CPU after the 3rd reading)
    skips it and takes it alone afterwards; every planned tone ends up read once, unflagged."""
    real_record = calibrate._Run.record
    with open_probe("sim://?board=notebook&seed=0") as probe:
        bench = probe.serial.bench
        host = FakeHostClock()
        bench.count_host(host)
        calls = []

        def slow_record(self, *a, **kw):
            calls.append(1)
            if len(calls) == 3:
                host.t += 1.0
            return real_record(self, *a, **kw)

        monkeypatch.setattr(calibrate._Run, "record", slow_record)
        out = SimToneOutput(bench)
        cfg = calibrate.RunConfig(circuit=bench.circuit.name, mode="gain", max_tones=12,
                                  installed=dict(bench.board.resistors))
        res = calibrate.run(probe, out, cfg, tmp_path / "run")
    assert 1 <= res.missed_slots <= 4 and res.to_json()["run"]["missed_slots"] == res.missed_slots
    rows = res.data.rows
    assert not [m for m in rows if m.flags - {"below-floor"}]
    freqs = sorted({m.frequency_hz for m in rows})
    assert len(freqs) == res.tones >= 4           # the reference and the designed batch
    assert len(rows) == res.tones * len(bench.circuit.channels)


def test_a_reply_after_the_next_tone_began_is_flagged(tmp_path):
    """measure_cued judges by the cue's own clock: no room for the window, not measured; a
    reply that came once the hold had ended (less the reply's own transfer) may hold the
    next tone's fade, so its rows are kept flagged, never fitted."""
    from hostctl.audio import Cue

    with open_probe("sim://?board=notebook&seed=0") as probe:
        bench = probe.serial.bench
        out = SimToneOutput(bench)
        cfg = calibrate.RunConfig(circuit=bench.circuit.name, mode="gain",
                                  installed=dict(bench.board.resistors))
        r = calibrate._Run(probe, out, cfg, tmp_path, False, None, None)
        out.wait = lambda c: None
        cue = Cue(1000.0, -6.0, 0.25, clock=bench.clock)
        ms = r.window_ms(1000.0) / 1000
        cue.ends_at = bench.clock() + ms + 0.03          # the reply arrives in time
        res, flag = r.measure_cued(cue)
        assert flag == ""
        cue.ends_at = bench.clock() + ms + backtoback.SEND_S + 1e-4   # room for the window,
        res2, flag2 = r.measure_cued(cue)                           # the reply comes late
        assert flag2 == "tone-changed"
        assert not r.record(res2, 1000.0, -6.0, True, flag2)
        assert r.data.rows and all("tone-changed" in m.flags for m in r.data.rows)
        cue.ends_at = bench.clock() + ms                 # no room: not even measured
        windows = bench.windows
        assert r.measure_cued(cue) is None and bench.windows == windows
        r.rec.close()


def test_not_before_and_a_fade_not_waited_for():
    """cue(not_before_s=) starts a tone no sooner than asked even when that is beyond the
    latency; silence(wait=False) charges nothing, and a later silence() only the rest."""
    bench = make_bench("notebook", 0)
    out = SimToneOutput(bench, count_host=False)
    t0 = bench.clock()
    c = out.cue(1000.0, -6.0, 0.2, not_before_s=0.5)
    out.wait(c)
    assert bench.clock() - t0 == pytest.approx(0.5 + FADE_S + SETTLE_S, abs=1e-9)
    c = out.cue(2000.0, -6.0, 0.2, not_before_s=0.1)     # the queue is later still
    assert c.settled_at - bench.clock() == pytest.approx(0.2 + 2 * FADE_S + SETTLE_S, abs=1e-9)
    t = bench.clock()
    out.silence(wait=False)
    assert bench.clock() == t and bench.tone_hz is None
    bench.wait(0.1)
    out.silence()                      # the fade and latency left after 0.1 s
    assert bench.clock() - t == pytest.approx(FADE_S + OUTPUT_LATENCY_S, abs=1e-9)


@pytest.mark.parametrize("mode", ["gain", "led"])
def test_no_tone_of_a_run_waits_the_output_latency(tmp_path, mode):
    """The reference is cued to reach the jack as the silent floor window closes and the
    first batch behind it: with a host that computes in no time, none of them waits the
    output's latency, no slot is missed, and the end's fade is not waited for."""
    waits = []
    with open_probe("sim://?board=notebook&seed=0") as probe:
        bench = probe.serial.bench
        bench.count_host(FakeHostClock())
        out = SimToneOutput(bench)
        real_wait = out.wait

        def wait(c):
            t = bench.clock()
            real_wait(c)
            waits.append(bench.clock() - t)
        out.wait = wait
        known = {"led_vf": 0.3} if mode == "led" else {}
        cfg = calibrate.RunConfig(circuit=bench.circuit.name, mode=mode, max_tones=24,
                                  installed=dict(bench.board.resistors), **known)
        waited0 = out.waited_s
        res = calibrate.run(probe, out, cfg, tmp_path / "run")
    assert res.missed_slots == 0 and len(waits) >= res.tones
    # gain: the reference and the design; led: the reference and the sweep (each later
    # round of LED splits depends on the readings before it, so it pays the latency)
    first = len(waits) if mode == "gain" else 1 + cfg.sweep_tones
    assert max(waits[:first]) < OUTPUT_LATENCY_S, waits
    assert out.waited_s - waited0 == pytest.approx(sum(waits))   # nothing else waited


def test_the_cli_settle_default_is_the_outputs():
    """What a real run waits after each fade (--settle) is what the virtual bench charges."""
    from hostctl.commands.calibrate import command as calibrate_cmd
    from hostctl.commands.check import command as check_cmd

    for cmd in (calibrate_cmd, check_cmd):
        opt = next(p for p in cmd.params if p.name == "settle_s")
        assert opt.default == SETTLE_S, cmd.name
