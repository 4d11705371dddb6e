"""The whole real chain: a short calibration through real sound and a real serial port.

hostctl's real sound output (PortAudio -> PulseAudio null sink), the virtual bench
listening to the sink's monitor and serving a pseudo-terminal (``python -m sims.bench
serve --listen``), hostctl's real serial client on that terminal - and the answer must be
the in-process simulation's (``hostctl calibrate --sim bench``, same board draw) within 2%.

What makes it deterministic rather than lucky: the listening bench holds every MEASURE, in
real time, until its recorder has heard one steady tone in the command's window (stamped in
the monotonic clock shared by both processes; sims.listen.MeasureGate), and hostctl only
sends MEASURE once its tone has settled at the output (+ ``--settle``). The bench reports
how many MEASUREs went without a steady tone; that must be none.

Needs pulseaudio, pulseaudio-utils, libasound2-plugins, libportaudio2 (apt); .ci/pulse.sh
starts (or reuses) the server. Skips with the reason without it, fails when CI is set.
Everything touching audio runs in child processes with PULSE_SERVER set (PortAudio reads
it once). Children get PYTHONPATH=<this checkout> so they run this tree's code.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time

import audio_server
import numpy as np
import pytest

pytestmark = pytest.mark.sound_server

ROOT = audio_server.ROOT
# bench-ideal: a noisy board the closed-form fit can model (on the passive bench board the
# two runs' answers would swing by more than their noise: the fit's model does not match it
# until the netlist fit of issue 12)
BOARD = "bench-ideal"
SEED = 3
TOLERANCE = 0.02
INSTALLED = "R_low=200,R_band_low=39,R_band_high=160,R_high=33"   # the board's nominal
# A short run: 100 ms windows, <= 16 tones, 1% asked so the two runs' own noise (each
# interval's half-width) stays well inside the 2% tolerance.
COMMON = ["--installed", INSTALLED, "--capacitance", "1e-6", "--mode", "gain",
          "--max-tones", "16", "--precision", "1%", "--window-ms", "100", "--json",
          "--no-plot"]
LEVEL_V = 1.0 * 10 ** (-6 / 20)      # the board: 1 V peak at 0 dBFS; hostctl plays -6 dBFS


@pytest.fixture(scope="module")
def pulse_env() -> dict[str, str]:
    try:
        env = audio_server.start_pulse()
    except RuntimeError as e:
        msg = f"no audio server for the chain test: {e}"
        print(msg)
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the real chain must run, but: {msg}")
        pytest.skip(msg)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _read_lines(proc: subprocess.Popen, want: tuple[str, ...], timeout_s: float
                ) -> dict[str, str]:
    """The first stdout line starting with each word of ``want`` (the bench's banner)."""
    lines: queue.Queue[str] = queue.Queue()

    def reader() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.put(line)

    threading.Thread(target=reader, daemon=True).start()
    got: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(got) < len(want):
        left = deadline - time.monotonic()
        try:
            line = lines.get(timeout=max(0.01, min(left, 0.5)))
        except queue.Empty:
            if left > 0 and proc.poll() is None:
                continue
            err = proc.stderr.read() if proc.poll() is not None and proc.stderr else ""
            raise AssertionError(f"sims.bench serve --listen gave {got} (exit {proc.poll()}); "
                                 f"stderr: {err[-600:]}") from None
        word, _, rest = line.strip().partition(" ")
        if word in want:
            got[word] = rest
    return got


@pytest.fixture(scope="module")
def chain(pulse_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    t0 = time.monotonic()
    serve = subprocess.Popen(
        [sys.executable, "-m", "sims.bench", "serve", "--board", BOARD, "--seed", str(SEED),
         "--listen", "pulse"],
        cwd=ROOT, env=pulse_env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True)
    try:
        try:
            banner = _read_lines(serve, ("PTY", "CONTROL"), 30)
        except AssertionError as e:
            # PortAudio without the ALSA 'pulse' device (libasound2-plugins): not a bug here
            if "no audio input device" in str(e) and not os.environ.get("CI"):
                print(f"chain test not run: {e}")
                pytest.skip(f"no PortAudio device for the sound server: {e}")
            raise
        out = tmp_path_factory.mktemp("chain") / "run"
        t1 = time.monotonic()
        cal = subprocess.run(
            [sys.executable, "-m", "hostctl", "calibrate", "--port", banner["PTY"],
             "--audio-device", "pulse", "--audio-rate", "48000", "--settle", "0.1",
             "--out", str(out), *COMMON],
            cwd=ROOT, env=pulse_env, capture_output=True, text=True, timeout=600)
        t_cal = time.monotonic() - t1
    finally:
        serve.send_signal(signal.SIGTERM)
        try:
            _, serve_err = serve.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            serve.kill()
            _, serve_err = serve.communicate()
    cal_err = "\n".join(ln for ln in cal.stderr.splitlines() if not ln.startswith("ALSA lib"))
    serve_err = "\n".join(ln for ln in serve_err.splitlines() if not ln.startswith("ALSA lib"))
    assert cal.returncode in (0, 1), f"hostctl calibrate failed ({cal.returncode}): {cal_err}"
    print(f"chain: calibrate {t_cal:.1f} s wall, total {time.monotonic() - t0:.1f} s; "
          f"bench: {serve_err.strip().splitlines()[-1] if serve_err.strip() else ''}")
    return {"report": json.loads(cal.stdout), "serve_err": serve_err, "cal_err": cal_err,
            "session": out / "session.csv"}


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The in-process simulation: `hostctl calibrate --sim bench`, same seed and options."""
    from click.testing import CliRunner

    from hostctl.commands.calibrate import command

    out = tmp_path_factory.mktemp("ref") / "run"
    res = CliRunner().invoke(command, ["--sim", BOARD, "--seed", str(SEED), "--out", str(out),
                                       *COMMON])
    assert res.exit_code in (0, 1), res.output
    return json.loads(res.stdout)


def _values(report: dict) -> dict[str, float]:
    return {k: float(v) for k, v in report["fit"]["values"].items()}


def test_every_measure_heard_a_steady_tone(chain: dict) -> None:
    m = re.search(r"listen: (\d+) MEASUREs heard .* (\d+) without a steady tone",
                  chain["serve_err"])
    assert m, f"no listen summary from the bench: {chain['serve_err'][-400:]}"
    heard, missed = int(m.group(1)), int(m.group(2))
    assert missed == 0, chain["serve_err"]
    # preflight's silence and every tone of the run (its 1 kHz reference the first: it is
    # recorded as data) went through the gate
    assert heard >= chain["report"]["run"]["tones"] + 1


def test_each_measure_heard_the_tone_hostctl_played_for_it(chain: dict) -> None:
    """Never the previous tone, never a half-faded level: the bench's log of what it heard
    per MEASURE is hostctl's sequence (silence, then the session's tones in order: the
    1 kHz reference, placed off the probe's bad ratios, is the first)."""
    from hostctl.sessionlog import read_session

    heard = re.findall(r"listen: MEASURE \d+ ms <- (silence|[\d.]+ Hz) at (-?[\d.]+) dBFS",
                       chain["serve_err"])
    played: list[float] = []
    for m in read_session(chain["session"]).rows:
        if not played or played[-1] != m.frequency_hz:
            played.append(m.frequency_hz)
    quiet = next(i for i, (h, _) in enumerate(heard) if h != "silence")
    assert quiet >= 1          # the pre-flight's silent windows (the rate, the floor) first
    tones: list[float] = []
    for h, _ in heard[quiet:]:
        f = float(h.split()[0])
        # repeats are re-measures and reference checks; the bench's sine fit of a short
        # recorded stretch is good to ~1e-4 (seen: 246.62 Hz heard for 246.6 Hz), while
        # distinct tones of a run differ by far more than 5e-4
        if not tones or abs(f / tones[-1] - 1) > 5e-4:
            tones.append(f)
    assert tones == pytest.approx(played, rel=5e-4) and abs(played[0] / 1000.0 - 1) < 0.01
    levels = [float(lv) for h, lv in heard[quiet:]]
    assert max(abs(lv + 6.0) for lv in levels) < 0.01


def test_chain_played_every_tone_at_the_right_level(chain: dict) -> None:
    from hostctl.sessionlog import read_session

    rep = chain["report"]
    assert 4 <= rep["run"]["tones"] <= 16       # the reference and the designed batch
    # a reading the host had to send late (a loaded machine) may overlap the next queued
    # tone: it is kept flagged tone-changed and measured again -- timing, not a fault
    late = "re-measured (tone-changed)"
    assert not [p for p in rep["run"]["problems"] if late not in p], rep["run"]["problems"]
    rows = read_session(chain["session"]).rows
    vins = [(m.frequency_hz, m.vin_v) for m in rows if m.vin_v and not m.flag]
    assert vins and all(not m.flags - {"below-floor", "tone-changed"} for m in rows)
    assert {m.frequency_hz for m in rows} == {f for f, _ in vins}
    # the bench's level is the recorded dBFS: hostctl's -6 dBFS is 0.501 V peak at the sound
    # card, which A0 sees through the source resistance and the probe's front end (ngspice)
    from sims.bench import make_bench

    bench = make_bench(BOARD, SEED)
    assert bench.amplitude_v(-6.0) == pytest.approx(LEVEL_V, rel=1e-12)
    ratio = [v / bench.analog_levels(f, -6.0)[0][1] for f, v in vins]
    assert min(ratio) > 0.98 and max(ratio) < 1.02, (min(ratio), max(ratio))


def test_chain_agrees_with_in_process_simulation_within_2_percent(chain: dict,
                                                                  reference: dict) -> None:
    got, ref = _values(chain["report"]), _values(reference)
    rel = {k: got[k] / ref[k] - 1 for k in ref}
    print("chain vs in-process: " + ", ".join(f"{k} {100 * v:+.2f}%" for k, v in rel.items()))
    bad = {k: f"{100 * v:+.2f}%" for k, v in rel.items() if abs(v) > TOLERANCE}
    assert not bad, f"components differ by more than 2%: {bad}"


# ------------------------------------------------------------ the gate, without any audio

RATE = 48000


def _capture_of(signal_: np.ndarray, t0: float, delivered_s: float):  # noqa: ANN202
    """A sims.listen.Capture holding ``signal_`` captured from monotonic ``t0`` on, of which
    the first ``delivered_s`` seconds have arrived (in 20 ms blocks)."""
    import threading as th
    from types import SimpleNamespace

    from sims.listen import Capture, _Block

    cap = Capture.__new__(Capture)
    cap.rate, cap.name, cap._cv = RATE, "fake", th.Condition()
    cap._stream = SimpleNamespace(active=True)
    n = int(delivered_s * RATE)
    blk = RATE // 50
    cap._blocks = [_Block(t0 + i / RATE, signal_[i:min(i + blk, n)].astype(float))
                   for i in range(0, n, blk)]
    return cap


def _played(changes: list[tuple[float, float | None, float]], total_s: float) -> np.ndarray:
    """What hostctl's synthesiser plays: (at_s, freq or None, dBFS) changes, with fades."""
    from hostctl.audio import ToneSynth

    syn = ToneSynth(RATE)
    parts, pos = [], 0
    for at, f, lv in changes:
        k = int(at * RATE) - pos
        parts.append(syn.render(k))
        pos += k
        if f is None:
            syn.set_silence()
        else:
            syn.set_tone(f, lv)
    parts.append(syn.render(int(total_s * RATE) - pos))
    return np.concatenate(parts)


def _gate(cap):  # noqa: ANN001, ANN202
    from sims.listen import MeasureGate

    tones: list = []
    written: list = []
    logs: list = []
    gate = MeasureGate(cap, lambda f, lv: tones.append((f, lv)),
                       lambda b: written.append((b, tuple(tones))), log=logs.append)
    return gate, tones, written, logs


def test_gate_holds_a_measure_until_its_window_is_heard() -> None:
    x = _played([(0.1, 1000.0, -6.0), (0.5, 3000.0, -12.0)], 1.2)
    cap = _capture_of(x, 100.0, 0.6)
    gate, tones, written, logs = _gate(cap)
    gate.feed(b"1 PING *ABCD\n2 MEASURE 100 *ABCD\n", 100.55)   # 3 kHz settled at ~0.52 s
    again = gate.pump(now=100.6)
    assert [w[0] for w in written] == [b"1 PING *ABCD\n"]       # PING goes straight on
    assert again is not None and not tones                      # MEASURE waits for audio
    cap2 = _capture_of(x, 100.0, 1.0)
    gate.capture = cap2
    assert gate.pump(now=100.8) is None
    assert written[-1][0] == b"2 MEASURE 100 *ABCD\n"
    (f, lv), = tones
    assert abs(f - 3000.0) < 1e-3 and abs(lv + 12.0) < 1e-3 and not logs


def test_gate_waits_out_a_fade_instead_of_measuring_it() -> None:
    """A MEASURE sent too early (during the fade) gets the tone after the fade, never the
    half-faded level or the old tone."""
    x = _played([(0.1, 1000.0, -6.0), (0.5, 200.0, -6.0)], 1.5)
    cap = _capture_of(x, 0.0, 1.5)
    gate, tones, written, logs = _gate(cap)
    gate.feed(b"7 MEASURE 100 *ABCD\n", 0.505)                   # mid fade-out
    assert gate.pump(now=1.5) is None
    (f, lv), = tones
    assert abs(f - 200.0) < 1e-3 and abs(lv + 6.0) < 1e-3 and not logs


def test_gate_silence_is_a_tone_too() -> None:
    x = _played([(0.1, 1000.0, -6.0), (0.3, None, 0.0)], 0.8)
    gate, tones, written, logs = _gate(_capture_of(x, 0.0, 0.8))
    gate.feed(b"3 MEASURE 50 *ABCD\n", 0.4)
    assert gate.pump(now=0.8) is None and tones[0][0] is None and len(written) == 1


def test_gate_gives_up_before_the_host_times_out() -> None:
    """No audio arriving: the reply still goes out within the budget, with a warning."""
    x = _played([(0.1, 1000.0, -6.0)], 0.3)
    gate, tones, written, logs = _gate(_capture_of(x, 0.0, 0.3))
    gate.feed(b"4 MEASURE 100 *ABCD\n", 0.3)
    assert gate.pump(now=0.5) is not None and not written       # still waiting
    assert gate.pump(now=0.3 + gate.budget_s + 0.1 + 0.01) is None
    assert len(written) == 1 and not tones and gate.fallbacks == 1 and "no steady" in logs[0]


def test_gate_partial_lines_and_reset() -> None:
    x = _played([(0.1, 1000.0, -6.0)], 0.3)
    gate, tones, written, logs = _gate(_capture_of(x, 0.0, 0.3))
    gate.feed(b"5 MEA", 0.0)
    gate.pump(now=0.01)
    assert not written                                          # the rest may follow
    gate.pump(now=0.2)
    assert written[0][0] == b"5 MEA"                            # never finished: passed on
    gate.feed(b"6 MEASURE 100 *ABCD\n", 0.25)
    gate.reset()                                                # the host closed the port
    assert gate.pump(now=1.0) is None and len(written) == 1
