"""hostctl.audio and sims.listen without a sound card: synthesis, safety, error mapping.

The real sound path is tests/test_audio_loopback.py; here a fake ``sounddevice`` module
raises exactly what the real one raises (see sounddevice.py: OSError at import,
ValueError for an unknown device name, PortAudioError(text, code) from PortAudio).
"""

from __future__ import annotations

import json
import math
import socket
import sys
import threading
import time
import types
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl import audio
from hostctl.audio import (
    ToneSynth,
    check_tone,
    open_output,
    replay,
    synthesize,
)
from hostctl.errors import AudioError
from sims.listen import ToneTracker, estimate_tone, fit_sine
from sims.tones import SimToneOutput

RATE = 48000
CAP = 10 ** (-6 / 20)


def step_bound(amp: float, freq: float, syn: ToneSynth) -> float:
    """Largest |x[n+1] - x[n]| a click-free tone can have: the sine's own per-sample step
    plus the raised-cosine envelope's steepest step (pi/2/N of the amplitude)."""
    return amp * (2 * math.pi * freq / syn.sample_rate + math.pi / (2 * syn.fade_n)) * (1 + 1e-9)


# ------------------------------------------------------------------------------- synthesis

def test_phase_continuous_across_tone_changes() -> None:
    syn = ToneSynth(RATE)
    parts = []
    for f, lv, n in [(1000, -6, 4800), (3000, -6, 2000), (3000, -12, 3000), (200, -8, 5000)]:
        syn.set_tone(f, lv)
        parts.append(syn.render(n))
    syn.set_silence()
    parts.append(syn.render(2000))
    x = np.concatenate(parts)
    worst = np.abs(np.diff(x)).max()
    assert worst <= step_bound(CAP, 3000, syn), worst
    # a change requested mid-fade continues smoothly from where the envelope is
    syn2 = ToneSynth(RATE)
    syn2.set_tone(1000, -6)
    a = syn2.render(200)                # fade-in (480 samples) not finished
    syn2.set_tone(5000, -6)
    b = syn2.render(3000)
    y = np.concatenate([a, b])
    assert np.abs(np.diff(y)).max() <= step_bound(CAP, 5000, syn2)


def test_block_size_does_not_matter() -> None:
    """The phase accumulator never resets: any block split gives the same samples."""
    def run(blocks: list[int]) -> np.ndarray:
        syn = ToneSynth(RATE)
        out = []
        for i, n in enumerate(blocks):
            if i == 0:
                syn.set_tone(997.0, -7.0)
            if i == 3:
                syn.set_tone(2500.0, -9.0)
            out.append(syn.render(n))
        return np.concatenate(out)

    a = run([100, 37, 1000, 513, 2048, 1])
    b = run([137, 0, 1000, 2562])        # same change positions (0, 1137), other splits
    assert len(a) == len(b) and np.allclose(a, b, atol=1e-12)
    # and one long block equals many short ones when changes line up
    c = run([100, 37, 1000, 513 + 2048 + 1])
    assert np.allclose(a, c, atol=1e-12)


def test_fade_in_and_out_are_raised_cosine() -> None:
    syn = ToneSynth(RATE, fade_s=0.010)
    n = syn.fade_n
    assert n == 480
    f, amp = 1000.0, 10 ** (-10 / 20)
    syn.set_tone(f, -10)
    x = syn.render(2 * n)
    j = np.arange(2 * n)
    carrier = amp * np.sin(2 * np.pi * f * j / RATE)
    ok = np.abs(carrier) > 0.2 * amp
    env = x[ok] / carrier[ok]
    want = np.where(j < n, 0.5 * (1 - np.cos(np.pi * (j + 1) / n)), 1.0)[ok]
    assert np.abs(env - want).max() < 1e-9
    assert np.abs(x[:20]).max() < 0.01 * amp            # starts from silence
    # fade out: the envelope falls the same way and stays at exact zero afterwards
    syn.set_silence()
    y = syn.render(2 * n)
    k = np.arange(2 * n) + 2 * n
    carrier = amp * np.sin(2 * np.pi * f * k / RATE)
    ok = (np.abs(carrier) > 0.2 * amp) & (np.arange(2 * n) < n)
    want = 1 - 0.5 * (1 - np.cos(np.pi * (np.arange(2 * n) + 1) / n))
    assert np.abs(y[ok] / carrier[ok] - want[ok]).max() < 1e-9
    assert np.all(y[n:] == 0.0)


def test_level_change_on_same_tone_does_not_go_through_silence() -> None:
    syn = ToneSynth(RATE)
    syn.set_tone(1000, -6)
    syn.render(2000)
    syn.set_tone(1000, -12)
    x = syn.render(syn.fade_n)
    # a 1 kHz cycle is 48 samples: every cycle's peak stays between the two levels
    peaks = np.abs(x).reshape(-1, 48).max(axis=1)
    assert peaks.min() > 10 ** (-12 / 20) * 0.99 and peaks.max() <= CAP


def test_synthesize_and_replay() -> None:
    x = synthesize(440, -20, 0.5, sample_rate=RATE)
    assert x.dtype == np.float32 and len(x) == RATE // 2
    assert x[0] == 0 and abs(x[-1]) < 1e-6
    fit = fit_sine(x[RATE // 10: RATE // 5], RATE)
    assert abs(fit.freq_hz - 440) < 1e-6 and abs(fit.level_dbfs + 20) < 1e-6
    syn = ToneSynth(RATE)
    parts = [syn.render(100)]
    syn.set_tone(1000, -6)
    parts.append(syn.render(1234))
    syn.set_tone(700, -8)
    parts.append(syn.render(999))
    syn.set_silence()
    parts.append(syn.render(1000))
    x = np.concatenate(parts)
    assert np.array_equal(replay(list(syn.history), len(x), RATE), x)


def test_timed_tone_is_sample_exact_and_cut_short() -> None:
    syn = ToneSynth(RATE)
    settled = syn.set_tone(1000, -6)
    syn.render(3000)                                  # buffering ran ahead of the settle
    silent_at = syn.set_silence(at=settled + 9000)
    assert silent_at == settled + 9000 + syn.fade_n
    x = np.concatenate([syn.render(5000), syn.render(20000)])
    end, n = silent_at - 3000, syn.fade_n              # x starts at sample 3000
    assert np.abs(x[end - n - 48:end - n]).max() > 0.99 * CAP   # full level until the fade
    assert np.abs(x[end - 24:end]).max() < 0.01 * CAP          # faded out exactly there
    assert np.all(x[end:] == 0.0)
    syn2 = ToneSynth(RATE)
    s2 = syn2.set_tone(1000, -6)
    syn2.render(1000)
    syn2.set_silence(at=s2 + 48000)                   # one second...
    syn2.render(100)
    syn2.cancel()                                     # ...Ctrl-C: fade out now instead,
    syn2.set_silence()                                # as SoundDeviceOutput.silence() does
    y = syn2.render(2000)
    assert np.all(y[syn2.fade_n + 1:] == 0.0)
    assert np.allclose(replay(list(syn.history), 3000 + 25000, RATE)[3000:], x, atol=1e-12)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.floats(20, 20000), st.floats(-60, -6), st.integers(1, 3000)),
                min_size=1, max_size=6),
       st.floats(-20, 0))
def test_peak_never_above_cap(steps: list[tuple[float, float, int]], cap: float) -> None:
    syn = ToneSynth(RATE, level_cap_dbfs=cap)
    cap_amp = 10 ** (cap / 20)
    out = []
    for f, lv, n in steps:
        lv = min(lv, cap)
        syn.set_tone(f, lv)
        out.append(syn.render(n))
    x = np.concatenate(out)
    # float64 rounding of the envelope only; the float32 the card gets rounds by < 6e-8
    assert np.abs(x).max() <= cap_amp * (1 + 1e-12)
    assert np.abs(x.astype(np.float32)).max() <= cap_amp * (1 + 1e-7)


# ------------------------------------------------------------------------------- refusals

@pytest.mark.parametrize("f, lv, rate, words", [
    (1000, -5.9, RATE, "above the level cap -6"),
    (1000, 0.0, RATE, "above the level cap"),
    (3700, -12, 8000, "0.45 x the 8000 Hz"),          # under Nyquist but too close to it
    (4100, -12, 8000, "outside"),                      # over Nyquist
    (19900, -12, 44100, "20..19845 Hz"),
    (25000, -12, 96000, "20..20000 Hz"),
    (19.9, -12, RATE, "outside"),
    (float("nan"), -12, RATE, "not a finite number"),
    (1000, float("inf"), RATE, "not a finite number"),
])
def test_refusals(f: float, lv: float, rate: int, words: str) -> None:
    with pytest.raises(AudioError, match=words.replace(".", r"\.")) as ei:
        check_tone(f, lv, sample_rate=rate)
    assert "\n" not in str(ei.value)
    assert ei.value.exit_code == 4


def test_refused_request_changes_nothing() -> None:
    syn = ToneSynth(RATE)
    syn.set_tone(1000, -6)
    syn.render(1000)
    with pytest.raises(AudioError):
        syn.set_tone(30000, -6)
    with pytest.raises(AudioError):
        syn.set_tone(1000, -3)
    assert syn.current == (1000.0, pytest.approx(CAP))
    assert syn.render(48).max() == pytest.approx(CAP, rel=1e-3)


def test_cap_itself_checked() -> None:
    with pytest.raises(AudioError, match="must be a number <= 0"):
        ToneSynth(RATE, level_cap_dbfs=3)
    check_tone(1000, -1, sample_rate=RATE, level_cap_dbfs=0)   # raising the cap allows it


# ------------------------------------------------------------------------------- fake sounddevice

class FakePortAudioError(Exception):
    pass


def dev(name: str, ins: int = 0, outs: int = 2, rate: float = 48000.0) -> dict:
    return {"name": name, "hostapi": 0, "max_input_channels": ins,
            "max_output_channels": outs, "default_samplerate": rate}


class FakeStream:
    """Calls the callback from a thread like PortAudio; ``die()`` = device unplugged."""

    def __init__(self, *, samplerate: float, device: int, channels: int, dtype: str,
                 latency: object, callback: object, finished_callback: object = None,
                 blocksize: int = 0) -> None:
        self.rate, self.channels, self.cb = samplerate, channels, callback
        self.finished = finished_callback
        self.latency = 0.01
        self.active = False
        self.frames: list[np.ndarray] = []
        FakeSD.streams.append(self)

    def start(self) -> None:
        self.active = True
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    storm_blocks = 0       # first blocks: underflow flagged, callback run flat out

    def _run(self) -> None:
        n = 0
        while self.active:
            storm = n < self.storm_blocks
            status = types.SimpleNamespace(output_underflow=storm)
            buf = np.zeros((480, self.channels), dtype=np.float32)
            self.cb(buf, 480, None, status)
            self.frames.append(buf)
            n += 1
            if not storm:
                time.sleep(480 / self.rate)       # real-time pace, like a sound card

    def die(self) -> None:
        self.active = False
        self._t.join()
        if self.finished:
            self.finished()

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


class FakeInStream:
    """Delivers a prepared signal in blocks (as fast as the consumer takes them)."""

    def __init__(self, signal: np.ndarray, *, device: int, channels: int, samplerate: float,
                 dtype: str, blocksize: int, callback: object, latency: object = None) -> None:
        self.signal, self.channels, self.block, self.cb = signal, channels, blocksize, callback
        self.active = False
        self.done = threading.Event()

    def start(self) -> None:
        self.active = True
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        for i in range(0, len(self.signal) - self.block + 1, self.block):
            if not self.active:
                break
            blk = np.zeros((self.block, self.channels), dtype=np.float32)
            blk[:, self.channels - 1] = self.signal[i:i + self.block]   # on the last channel
            self.cb(blk, self.block, None, None)
            time.sleep(0.002)
        self.done.set()

    def stop(self) -> None:
        self.active = False

    def close(self) -> None:
        self.active = False


class FakeSD(types.ModuleType):
    streams: list[FakeStream] = []

    def __init__(self, devices: list[dict], default_out: int = 0) -> None:
        super().__init__("sounddevice")
        self.devices = devices
        self.PortAudioError = FakePortAudioError
        self.CallbackAbort = type("CallbackAbort", (Exception,), {})
        self.default = types.SimpleNamespace(device=[default_out, default_out])
        self.check_error: Exception | None = None
        self.input_signal = np.zeros(0)
        self.open_error: Exception | None = None
        FakeSD.streams = []

    def query_devices(self, device: object = None, kind: str | None = None) -> object:
        if device is None:
            return self.devices
        hits = [i for i, d in enumerate(self.devices)
                if str(device).lower() in d["name"].lower() and d[f"max_{kind}_channels"] > 0]
        if not hits:
            raise ValueError(f"No {kind} device matching {device!r}")
        if len(hits) > 1:
            raise ValueError(f"Multiple {kind} devices found for {device!r}:\n[0] a\n[1] b")
        return {**self.devices[hits[0]], "index": hits[0]}

    def query_hostapis(self) -> list[dict]:
        return [{"name": "ALSA"}]

    def check_output_settings(self, **kw: object) -> None:
        if self.check_error:
            raise self.check_error

    def InputStream(self, **kw: object) -> FakeInStream:  # noqa: N802 - sounddevice's name
        return FakeInStream(self.input_signal, **kw)

    def OutputStream(self, **kw: object) -> FakeStream:  # noqa: N802 - sounddevice's name
        if self.open_error:
            raise self.open_error
        return FakeStream(**kw)


@pytest.fixture
def fake_sd(monkeypatch: pytest.MonkeyPatch) -> FakeSD:
    sd = FakeSD([dev("HDA Intel PCH: ALC3246 Analog (hw:0,0)", 2, 2, 44100.0),
                 dev("USB Audio CODEC", 0, 2), dev("Mic only", 2, 0)])
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    return sd


def one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg and e.value.exit_code == 4
    return msg


def test_portaudio_library_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    class Finder:
        def find_spec(self, name: str, path: object = None, target: object = None) -> None:
            if name == "sounddevice":
                raise OSError("PortAudio library not found")
            return None

    monkeypatch.delitem(sys.modules, "sounddevice", raising=False)
    monkeypatch.setattr(sys, "meta_path", [Finder(), *sys.meta_path])
    with pytest.raises(AudioError) as ei:
        open_output("USB")
    assert "apt-get install libportaudio2" in one_line(ei)
    devices, reason = audio.probe_output_devices()
    assert devices == [] and "libportaudio2" in (reason or "")


def test_no_output_device(monkeypatch: pytest.MonkeyPatch) -> None:
    sd = FakeSD([dev("Mic only", 2, 0)], default_out=-1)
    monkeypatch.setitem(sys.modules, "sounddevice", sd)
    with pytest.raises(AudioError) as ei:
        open_output()
    assert "no audio output device found" in one_line(ei)
    assert audio.list_output_devices() == []
    assert "no output device" in (audio.probe_output_devices()[1] or "")


def test_named_device_missing_or_ambiguous(fake_sd: FakeSD) -> None:
    with pytest.raises(AudioError) as ei:
        open_output("nonexistent")
    msg = one_line(ei)
    assert "'nonexistent'" in msg and "USB Audio CODEC" in msg and "hostctl devices" in msg
    fake_sd.devices.append(dev("USB Audio CODEC #2"))
    with pytest.raises(AudioError) as ei:
        open_output("usb")
    assert "several audio output devices match 'usb'" in one_line(ei)
    with pytest.raises(AudioError) as ei:
        open_output(2)                                   # an input-only device
    assert "index 2 is not an output device" in one_line(ei)


def test_sample_rate_not_supported(fake_sd: FakeSD) -> None:
    fake_sd.check_error = FakePortAudioError("Invalid sample rate", -9997)
    with pytest.raises(AudioError) as ei:
        open_output("USB", sample_rate=12345)
    msg = one_line(ei)
    # the library names the setting, not a flag: each command words it with its own flag
    assert "does not support 12345 Hz" in msg and "another sample rate" in msg
    assert ei.value.settings == {"sample_rate": "sample rate"}


def test_device_busy(fake_sd: FakeSD) -> None:
    fake_sd.open_error = FakePortAudioError(
        "Unanticipated host error", -9999, (0, -16, "Device or resource busy"))
    with pytest.raises(AudioError) as ei:
        open_output("HDA")
    assert "busy" in one_line(ei) and "Device or resource busy" in str(ei.value)


def test_real_output_path_with_fake_stream(fake_sd: FakeSD) -> None:
    out = open_output("usb", channel="right", settle_s=0.0)
    assert out.sample_rate == 48000 and out.device_name == "USB Audio CODEC"
    out.tone(1000, -6)
    assert out.synth.position >= out.synth.fade_n      # returned only after the fade-in
    out.close()
    out.close()                                        # twice is fine
    frames = np.concatenate(FakeSD.streams[0].frames)
    assert np.all(frames[:, 0] == 0) and np.abs(frames[:, 1]).max() > 0.45
    assert np.abs(frames[-1]).max() == 0               # faded out before stopping
    # default device, its own default rate
    out = open_output(None)
    assert out.sample_rate == 44100 and out.device_name.startswith("HDA")
    out.close()


def test_device_lost_mid_run(fake_sd: FakeSD) -> None:
    out = open_output(1, settle_s=0.0)
    out.tone(500, -12)
    FakeSD.streams[0].die()
    with pytest.raises(AudioError) as ei:
        out.tone(600, -12)
    assert "stopped mid-run" in one_line(ei)
    out.close()


def test_mono_device_and_bad_channel(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", FakeSD([dev("Mono", 0, 1)]))
    with pytest.raises(AudioError, match="mono"):
        open_output("Mono", channel="left")
    with pytest.raises(AudioError, match="not one of both, left, right"):
        open_output("Mono", channel="center")


# ------------------------------------------------------------------------------- sim outputs

class FakeBench:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    def set_tone(self, freq_hz: float | None, level_dbfs: float = -6.0) -> None:
        self.calls.append((freq_hz, level_dbfs))


def test_sim_tone_output() -> None:
    bench = FakeBench()
    with SimToneOutput(bench) as out:
        out.tone(1000, -6)
        with pytest.raises(AudioError):
            out.tone(1000, -1)
        with pytest.raises(AudioError):
            out.tone(23000, -12)
        out.silence()
    assert bench.calls == [(1000.0, -6.0), (None, -6.0), (None, -6.0)]


def test_socket_tone_output(tmp_path: Path) -> None:
    path = str(tmp_path / "ctl.sock")
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    srv.bind(path)
    srv.listen(1)
    got: list[dict] = []

    def serve() -> None:
        conn, _ = srv.accept()
        with conn, conn.makefile("rwb") as f:
            for line in f:
                req = json.loads(line)
                got.append(req)
                if req.get("tone_hz") == 777.0:
                    rep = {"ok": False, "error": "no"}
                else:
                    rep = {"ok": True, "sim_time_s": 1.5 * len(got)}
                f.write((json.dumps(rep) + "\n").encode())
                f.flush()

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    out = open_output(f"sim:{path}")
    out.tone(1000, -6)
    assert out.sim_time_s == 1.5
    with pytest.raises(AudioError, match="refused"):
        out.tone(777, -6)
    with pytest.raises(AudioError, match="above the level cap"):
        out.tone(1000, 0)
    out.close()
    th.join(2)
    srv.close()
    assert got == [{"tone_hz": 1000.0, "level_dbfs": -6.0},
                   {"tone_hz": 777.0, "level_dbfs": -6.0}, {"tone_hz": None}]
    with pytest.raises(AudioError) as ei:
        open_output(f"sim:{tmp_path}/missing.sock")
    assert "sims.bench serve" in one_line(ei)


# ------------------------------------------------------------------------------- listen

@pytest.mark.parametrize("f", [50.0, 1000.0, 15000.0, 20000.0])
def test_estimate_tone_in_one_block(f: float) -> None:
    t = np.arange(int(0.1 * RATE)) / RATE
    x = 10 ** (-12 / 20) * np.sin(2 * np.pi * f * t + 0.3) + 1e-5 * np.random.default_rng(1).normal(
        size=t.size)
    ef, lv = estimate_tone(x.astype(np.float32), RATE)
    assert abs(ef - f) / f < 1e-5 and abs(lv + 12) < 0.001


def test_estimate_silence_and_changing_blocks() -> None:
    assert estimate_tone(np.zeros(4800), RATE)[0] is None
    syn = ToneSynth(RATE)
    syn.set_tone(1000, -6)
    syn.render(4800)
    syn.set_tone(3000, -6)                      # fade out, switch, fade in inside the block
    assert estimate_tone(syn.render(4800), RATE) is None


def test_tracker_reports_changes_only() -> None:
    seen: list = []
    tr = ToneTracker(lambda f, lv: seen.append((f, lv)))
    for est in [(None, -120.0), (None, -100.0), (1000.0, -6.0), (1000.0001, -6.01), None,
                (2000.0, -6.0), (2000.0, -9.0), (None, -120.0)]:
        tr.feed(est)
    assert seen == [(None, -120.0), (1000.0, -6.0), (2000.0, -6.0), (2000.0, -9.0),
                    (None, -120.0)]


# ------------------------------------------------------------------------------- CLI

def run_cli(args: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str]:
    from hostctl.cli import main
    with pytest.raises(SystemExit) as ei:
        main(args)
    return int(ei.value.code or 0), capsys.readouterr().err


@pytest.mark.parametrize("args, words", [
    (["1000", "--level", "-3"], "above the level cap -6 dBFS"),
    (["30000"], "outside the sound card's reliable band"),
    (["1000", "--level-cap", "2"], "must be a number <= 0"),
])
def test_cli_refuses_before_touching_a_device(args: list[str], words: str,
                                              capsys: pytest.CaptureFixture) -> None:
    code, err = run_cli(["tone", *args], capsys)
    assert code == 4 and words in err and err.count("\n") == 1


def test_cli_words_the_setting_with_its_own_flag(fake_sd: FakeSD,
                                                capsys: pytest.CaptureFixture) -> None:
    """The same library error names `tone --sample-rate` and `calibrate --audio-rate`."""
    fake_sd.check_error = FakePortAudioError("Invalid sample rate", -9997)
    code, err = run_cli(["tone", "440", "--audio-device", "usb", "--sample-rate", "12345"],
                        capsys)
    assert code == 4 and "choose another --sample-rate (44100" in err, err
    code, err = run_cli(["tone", "1000", "--level", "-3"], capsys)
    assert code == 4 and "lower --level or raise --level-cap (at most 0)" in err, err
    from hostctl import cli
    cli._invoked[:] = ["calibrate"]
    assert cli._flags({"sample_rate": "", "device": ""}) == {
        "sample_rate": "--audio-rate", "device": "--audio-device"}


def test_cli_tone_to_fake_device(fake_sd: FakeSD, capsys: pytest.CaptureFixture) -> None:
    code, err = run_cli(["tone", "440", "--duration", "0.1", "--audio-device", "usb",
                         "--audio-channel", "left"], capsys)
    assert code == 0 and "playing 440 Hz at -12 dBFS on 'USB Audio CODEC' (left" in err
    frames = np.concatenate(FakeSD.streams[0].frames)
    assert np.all(frames[:, 1] == 0)
    assert abs(np.abs(frames[:, 0]).max() - 10 ** (-12 / 20)) < 1e-3


def test_follow_reports_each_tone_once(fake_sd: FakeSD) -> None:
    from sims.listen import follow

    syn = ToneSynth(RATE)
    parts = [syn.render(RATE // 2)]
    for f, lv in [(50, -6), (1000, -6), (1000, -20), (15000, -10)]:
        syn.set_tone(f, lv)
        parts.append(syn.render(RATE // 2))
    syn.set_silence()
    parts.append(syn.render(RATE // 2))
    fake_sd.input_signal = np.concatenate(parts)
    seen: list = []
    stop = threading.Event()
    final_silence = threading.Event()

    def on_tone(f: float | None, lv: float) -> None:
        seen.append((f, lv))
        if f is None and len(seen) > 1:
            final_silence.set()
        if f == 15000.0:
            raise RuntimeError("a bench that refuses this tone")   # follow carries on

    def stopper() -> None:
        # Stop on what follow() reported, not on a guess of how long it takes to consume
        # the blocks (a busy machine is slower): the generous time-out only ends a failure.
        final_silence.wait(timeout=120)
        stop.set()

    FakeSD.streams_in = []
    orig = fake_sd.InputStream

    def instream(**kw: object) -> FakeInStream:
        st = orig(**kw)
        FakeSD.streams_in.append(st)
        return st

    fake_sd.InputStream = instream  # type: ignore[method-assign]
    threading.Thread(target=stopper, daemon=True).start()
    follow("Mic", on_tone, stop_event=stop, sample_rate=RATE, block_s=0.1)
    rounded = [(None if f is None else round(f, 3), round(lv, 3)) for f, lv in seen]
    assert [r[0] for r in rounded] == [None, 50.0, 1000.0, 1000.0, 15000.0, None], rounded
    assert [r[1] for r in rounded[1:5]] == [-6.0, -6.0, -20.0, -10.0]


def test_first_tone_waits_out_an_underrun_storm(fake_sd: FakeSD,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """PulseAudio's ALSA plugin can start a stream racing through underruns; the first
    fade-in must not be rendered into that (it would be lost, leaving a click)."""
    monkeypatch.setattr(FakeStream, "storm_blocks", 2000)
    out = open_output("usb", settle_s=0.0)
    out.tone(1000, -12)
    first_tone_at = out.synth.history[0][0]
    out.close()
    assert out.underflows >= 2000
    # after the storm and at least one block paced in real time (hostctl waits 0.3 s of
    # wall time; how many frames the fake renders in it depends on the machine's load)
    assert first_tone_at >= 2000 * 480 + 480
