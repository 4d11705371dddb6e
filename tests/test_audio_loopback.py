"""Real sound through PortAudio into a PulseAudio null sink, recorded from its monitor.

Needs `pulseaudio pulseaudio-utils libasound2-plugins libportaudio2` (apt). The server is
started (or reused) by .ci/pulse.sh. Without it these tests skip with the reason -- unless
the environment variable CI is set, where they fail: CI must exercise the sound path.

Audio runs in child processes (tests/audio_server.py) so PortAudio initialises after
PULSE_SERVER is set, whatever else this pytest process imported.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import audio_server
import numpy as np
import pytest

from sims.listen import fit_sine

pytestmark = pytest.mark.sound_server

HERE = Path(__file__).parent
REC_RATE = audio_server.MONITOR_RATE
CAP = 10 ** (-6 / 20)


@pytest.fixture(scope="module")
def pulse_env() -> dict[str, str]:
    try:
        return audio_server.start_pulse()
    except RuntimeError as e:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set, so the audio loopback must run, but: {e}")
        pytest.skip(f"no audio server: {e}")


def child(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    """tests/audio_server.py in a fresh python that imports this checkout's hostctl."""
    path = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH", "")) if p)
    return subprocess.run([sys.executable, str(HERE / "audio_server.py"), *args],
                          env={**env, "PYTHONPATH": path}, capture_output=True, text=True,
                          timeout=timeout)


def tone_segments(x: np.ndarray, min_amp: float) -> list[tuple[int, int]]:
    """Where a tone plays, found from the signal itself (capture starts late, unknown):
    runs of the analytic envelope above a third of the quietest tone, >= 0.2 s long. Tone
    changes fade through silence, so each tone is its own run."""
    from scipy.signal import hilbert

    env = np.abs(hilbert(x))
    on = np.concatenate([[False], env > min_amp / 3, [False]])
    edges = np.flatnonzero(np.diff(on.astype(np.int8)))
    runs = list(zip(edges[::2], edges[1::2], strict=True))
    return [(int(a), int(b)) for a, b in runs if b - a > 0.2 * REC_RATE]


def raised_cosine(u: np.ndarray) -> np.ndarray:
    return 0.5 * (1 - np.cos(np.pi * np.clip(u, 0, 1)))


def transition_fit(x: np.ndarray, old: np.ndarray | None, new: np.ndarray | None,
                   n_fade: float) -> tuple[float, float]:
    """Fit "old tone fades out over n_fade samples from t0, then new tone fades in over the
    next n_fade" (either may be absent) to x by the onset t0 alone; return t0 and the worst
    deviation from that shape, relative to the louder tone's amplitude. ``old``/``new``
    are the steady sines extended over the window (phase runs on, so they are exact)."""
    j = np.arange(len(x), dtype=np.float64)
    scale = max(np.abs(m).max() for m in (old, new) if m is not None)
    best = (math.inf, 0.0, 0.0)
    for t0 in np.arange(0, len(x) - n_fade, 0.5):
        pred = np.zeros(len(x))
        if old is not None:
            pred += (1 - raised_cosine((j - t0) / n_fade)) * old
            start_new = t0 + n_fade
        else:
            start_new = t0
        if new is not None:
            pred += raised_cosine((j - start_new) / n_fade) * new
        r = x - pred
        sse = float(r @ r)
        if sse < best[0]:
            best = (sse, float(t0), float(np.abs(r).max() / scale))
    return best[1], best[2]


def analyse(info: dict) -> dict:
    """Each tone's frequency/amplitude error and each fade's shape; AssertionError when the
    recording was damaged (e.g. by sound-server underruns; the caller may retry)."""
    rec = info["rec"]
    left = rec[:, 0]
    tones = info["tones"]
    segs = tone_segments(left, min(10 ** (lv / 20) for _, lv in tones))
    assert len(segs) == len(tones), (
        f"{len(segs)} tone stretches recorded for {len(tones)} tones played "
        f"(output underflows: {info['underflows']})")
    n_fade = info["fade_n"] * REC_RATE / info["rate"]
    margin = int(0.03 * REC_RATE)
    rows, fits = [], []
    for (a, b), (f, lv) in zip(segs, tones, strict=True):
        fit = fit_sine(left[a + margin:b - margin], REC_RATE, f)
        assert fit.residual < 1e-3 * fit.amplitude, (
            f"{f} Hz is not one clean sine (residual {fit.residual / fit.amplitude:.1e}); "
            f"output underflows: {info['underflows']}")
        fits.append((fit, a + margin))
        rows.append({"freq_hz": f, "level_dbfs": lv, "measured_hz": fit.freq_hz,
                     "freq_err": fit.freq_hz / f - 1, "measured_dbfs": fit.level_dbfs,
                     "amp_err": fit.amplitude / 10 ** (lv / 20) - 1})

    def model(i: int, lo: int, hi: int) -> np.ndarray:
        fit, origin = fits[i]
        j = np.arange(lo, hi)
        return fit.amplitude * np.sin(2 * np.pi * fit.freq_hz * (j - origin) / REC_RATE
                                      + fit.phase)

    w = int(n_fade + 0.01 * REC_RATE)
    fades = []                    # (what, worst deviation)
    lo, hi = segs[0][0] - w, segs[0][0] + w
    fades.append(("fade-in from silence", transition_fit(left[lo:hi], None, model(0, lo, hi),
                                                         n_fade)[1]))
    for i in range(len(segs) - 1):
        lo, hi = segs[i][1] - w, segs[i + 1][0] + w
        fades.append((f"{tones[i][0]:g} -> {tones[i + 1][0]:g} Hz", transition_fit(
            left[lo:hi], model(i, lo, hi), model(i + 1, lo, hi), n_fade)[1]))
    lo, hi = segs[-1][1] - w, segs[-1][1] + w
    fades.append(("fade-out to silence", transition_fit(left[lo:hi], model(len(segs) - 1, lo, hi),
                                                         None, n_fade)[1]))
    return {"rows": rows, "fades": fades, "peak": float(np.abs(rec).max()),
            "right_peak": float(np.abs(rec[:, 1]).max())}


def recorded(pulse_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory,
             mode: str) -> dict:
    """One tests/audio_server.py ``mode`` run, analysed; a run a busy machine spoiled with
    underruns is retried twice (a damaged run without underruns is a real failure)."""
    problems: list[str] = []
    for attempt in range(3):
        out = tmp_path_factory.mktemp(mode)
        p = child(pulse_env, mode, str(out))
        assert p.returncode == 0, f"{mode} child failed:\n{p.stderr[-2000:]}"
        info = json.loads((out / "info.json").read_text())
        info["rec"] = np.load(out / "rec.npy").astype(np.float64)
        try:
            info["result"] = analyse(info)
        except AssertionError as e:
            problems.append(f"attempt {attempt + 1}: {e}")
            if info["underflows"] == 0:
                raise                        # not the sound server: a real failure
            continue
        info["problems"] = problems
        return info
    pytest.fail(f"every {mode} run was damaged by underruns: " + " | ".join(problems))


@pytest.fixture(scope="module")
def played(pulse_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One play/record run of the tone() path."""
    return recorded(pulse_env, tmp_path_factory, "play")


def test_tones_come_back_exactly(played: dict) -> None:
    res = played["result"]
    for note in played["problems"]:
        print("retried:", note)
    for r in res["rows"]:
        print(f"{r['freq_hz']:8g} Hz {r['level_dbfs']:4g} dBFS -> {r['measured_hz']:.6f} Hz "
              f"(error {r['freq_err']:+.1e}), {r['measured_dbfs']:.4f} dBFS (amplitude error "
              f"{r['amp_err']:+.1e})")
        assert abs(r["freq_err"]) < 1e-3, r
        assert abs(r["amp_err"]) < 5e-3, r
    for what, dev in res["fades"]:
        print(f"{what}: worst deviation from 10 ms raised-cosine fades {dev:.1e}")
        assert dev < 0.05, (what, dev)
    print(f"peak {res['peak']:.6f} (cap {CAP:.6f}); output at {played['rate']} Hz, "
          f"latency {played['latency_s']:.3f} s, underflows {played['underflows']}")
    # nothing above the cap (the server's 44.1->48 kHz resampler may overshoot by ~1e-4)
    assert res["peak"] <= CAP * (1 + 1e-3)
    assert res["right_peak"] < 1e-4                     # --audio-channel left honoured
    # tone() returned only after fade-in + latency + settle (how much later is the machine's
    # load, not the code's: that is for the benchmarks)
    for t in played["tone_returned_s"]:
        assert t >= played["latency_s"] + 0.05


def test_cued_tones_follow_each_other_without_the_latency(
        pulse_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> None:
    """Tones queued at once (AudioOutput.cue) come out back to back: from one fade-in to the
    next, exactly the fade-out, the fade-in, the settle and the hold asked for -- the output
    latency (0.2 s) is paid once, not per tone. Judged from the recorded samples alone."""
    info = recorded(pulse_env, tmp_path_factory, "cued")
    res = info["result"]
    for r in res["rows"]:
        assert abs(r["freq_err"]) < 1e-3 and abs(r["amp_err"]) < 5e-3, r
    for what, dev in res["fades"]:
        assert dev < 0.05, (what, dev)
    left = info["rec"][:, 0]
    segs = tone_segments(left, min(10 ** (lv / 20) for _, lv in info["tones"]))
    fade_s = info["fade_n"] / info["rate"]
    for k, hold in enumerate(info["holds"][:-1]):
        got = (segs[k + 1][0] - segs[k][0]) / REC_RATE
        want = 2 * fade_s + info["settle_s"] + hold
        print(f"tone {k} -> {k + 1}: {got * 1000:.2f} ms between fade-ins, "
              f"{want * 1000:.2f} ms asked (latency {info['latency_s'] * 1000:.0f} ms)")
        assert abs(got - want) < 0.002, (k, got, want)
    assert info["ends_minus_settled"] == pytest.approx(info["holds"])
    # the first tone was asked to wait for a silent window longer than the latency: it
    # settled no sooner (the output's own jack clock, less a block of render jitter; later
    # is only the host's turn); silence(wait=False) still ends in a whole fade-out
    # (res["fades"] above: the recording's last transition)
    first = info["not_before_s"] + fade_s + info["settle_s"]
    assert info["first_settled_after_s"] >= first - 0.05, info


def test_an_abrupt_start_is_not_taken_for_a_fade() -> None:
    """The fade check can fail: a sine switched on at full level deviates by ~0.5."""
    t = np.arange(2000) / REC_RATE
    model = np.sin(2 * np.pi * 1000 * t)
    x = np.where(np.arange(2000) >= 1000, model, 0.0)
    assert transition_fit(x, None, model, 480)[1] > 0.3
    faded = raised_cosine((np.arange(2000) - 700.5) / 480) * model
    assert transition_fit(faded, None, model, 480)[1] < 1e-9
    other = np.sin(2 * np.pi * 3000 * t)
    switch = (1 - raised_cosine((np.arange(2000) - 500) / 480)) * model + raised_cosine(
        (np.arange(2000) - 980) / 480) * other
    assert transition_fit(switch, model, other, 480)[1] < 1e-9
    assert transition_fit(np.where(np.arange(2000) < 900, model, other), model, other,
                          480)[1] > 0.3


def test_follow_hears_every_tone(played: dict) -> None:
    """sims.listen.follow on the same monitor reports each tone (what --listen relies on)."""
    assert not played["follow_errors"], played["follow_errors"]
    ev = [(f, lv) for _, f, lv in played["events"]]
    for f, lv in played["tones"]:
        hits = [(ef, elv) for ef, elv in ev if ef is not None and abs(ef / f - 1) < 1e-3
                and abs(elv - lv) < 0.05]
        assert hits, f"follow() never reported {f} Hz at {lv} dBFS: {ev}"
    assert ev[-1][0] is None, "follow() did not report the final silence"
    # no half-faded levels reported: every audible report is one of the tones asked
    for ef, elv in ev:
        if ef is not None:
            assert any(abs(ef / f - 1) < 1e-3 and abs(elv - lv) < 0.05
                       for f, lv in played["tones"]), (ef, elv)


def test_cli_tone_plays_into_the_null_sink(pulse_env: dict[str, str], tmp_path: Path) -> None:
    wav = tmp_path / "cli.npy"
    recp = subprocess.Popen([sys.executable, str(HERE / "audio_server.py"), "record", "60",
                             str(wav)], env=pulse_env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert recp.stdout is not None
        line = recp.stdout.readline()
        assert line.strip() == "READY", recp.stderr.read() if recp.stderr else line
        p = subprocess.run([sys.executable, "-m", "hostctl", "tone", "1000", "--duration", "0.3"],
                           env=pulse_env, capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, p.stderr
        assert "playing 1000 Hz at -12 dBFS" in p.stderr
        assert recp.stdin is not None
        recp.stdin.write("played\n")      # the recorder stops once it heard the tone end
        recp.stdin.close()
        recp.wait(timeout=120)
    finally:
        if recp.poll() is None:
            recp.kill()
            recp.wait()
    x = np.load(wav)[:, 0].astype(np.float64)
    loud = np.flatnonzero(np.abs(x) > 0.05 * 10 ** (-12 / 20))
    assert loud.size, "hostctl tone played nothing into the sink"
    heard_s = (loud[-1] - loud[0]) / REC_RATE
    mid = x[loud[0] + 1000: loud[-1] - 1000]
    fit = fit_sine(mid, REC_RATE, 1000.0)
    print(f"hostctl tone: heard {heard_s:.3f} s, {fit.freq_hz:.4f} Hz, {fit.level_dbfs:.3f} dBFS")
    assert abs(fit.freq_hz - 1000) < 1 and abs(fit.level_dbfs + 12) < 0.05
    assert 0.25 < heard_s < 0.35


def test_cli_unknown_device_is_one_line_exit_4(pulse_env: dict[str, str]) -> None:
    p = subprocess.run([sys.executable, "-m", "hostctl", "tone", "1000", "--duration", "0.3",
                        "--audio-device", "nonexistent"], env=pulse_env, capture_output=True,
                       text=True, timeout=120)
    assert p.returncode == 4, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if ln.startswith("hostctl:")]
    assert len(lines) == 1 and "no audio output device matching 'nonexistent'" in lines[0]
    assert "Traceback" not in p.stderr
