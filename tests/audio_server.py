"""Helpers for the loopback tests: a PulseAudio null sink, and the programs that use it.

The tests never initialise PortAudio in the pytest process: PortAudio reads PULSE_SERVER
once, when it initialises, and other tests may already have imported sounddevice. Anything
that touches audio runs as a child process of this file with PULSE_SERVER set:

    python tests/audio_server.py play OUT_DIR      # real open_output + recorder + follow()
    python tests/audio_server.py record SECONDS OUT.npy   # READY once capturing; a line on
                                                          # stdin: stop after the sound ends
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PULSE_SH = ROOT / ".ci" / "pulse.sh"
MONITOR_RATE = 48000          # the null sink's rate (.ci/pulse.sh)


def start_pulse() -> dict[str, str]:
    """Run .ci/pulse.sh (starts or reuses the server); the env for child processes.

    Raises RuntimeError with the reason when no server can be started.
    """
    if shutil.which("bash") is None:
        raise RuntimeError("bash not found")
    for tool in ("pulseaudio", "pactl"):
        if shutil.which(tool) is None:
            raise RuntimeError(f"{tool} not installed: apt-get install pulseaudio "
                               "pulseaudio-utils libasound2-plugins")
    try:
        p = subprocess.run(["bash", str(PULSE_SH)], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise RuntimeError(".ci/pulse.sh did not finish within 60 s") from None
    if p.returncode != 0:
        raise RuntimeError(f".ci/pulse.sh failed: {p.stderr.strip()[-400:]}")
    line = p.stdout.strip().splitlines()[-1] if p.stdout.strip() else ""
    prefix = "export PULSE_SERVER="
    if not line.startswith(prefix):
        raise RuntimeError(f".ci/pulse.sh printed {p.stdout!r}, not an export line")
    env = dict(os.environ)
    env["PULSE_SERVER"] = line[len(prefix):]
    return env


# ------------------------------------------------------------------------------- child side

class Recorder:
    """The sink's monitor through a separate InputStream (more stable than duplex)."""

    def __init__(self, sd, rate: int = MONITOR_RATE) -> None:  # noqa: ANN001
        from hostctl.audio import resolve_device

        idx, _ = resolve_device(sd, None, "input")     # default source = the monitor
        self.blocks: list = []
        self.stream = sd.InputStream(device=idx, channels=2, samplerate=rate, dtype="float32",
                                     latency=0.2, callback=self._cb)
        self.rate = rate

    def _cb(self, indata, frames, t, status) -> None:  # noqa: ANN001
        self.blocks.append(indata.copy())

    def start(self, timeout_s: float = 15.0) -> float:
        """Start and wait until data flows (capture starts late); seconds waited."""
        t0 = time.monotonic()
        self.stream.start()
        while not self.blocks:
            if time.monotonic() - t0 > timeout_s:
                raise RuntimeError(f"the monitor delivered nothing in {timeout_s} s")
            time.sleep(0.01)
        return time.monotonic() - t0

    def stop(self):  # noqa: ANN201
        import numpy as np

        self.stream.stop()
        self.stream.close()
        return np.concatenate(self.blocks) if self.blocks else np.zeros((0, 2), np.float32)


def _hold_until(heard, at_least_s: float, errors: list, timeout_s: float = 30.0) -> None:  # noqa: ANN001
    """Sleep at least ``at_least_s``, then until ``heard()`` (or the generous time-out, after
    which the test's own assertions say what was missed)."""
    t_end = time.monotonic() + timeout_s
    time.sleep(at_least_s)
    while not heard() and not errors and time.monotonic() < t_end:
        time.sleep(0.02)


def play(out_dir: Path) -> None:
    """Record the monitor (raw + follow()) while the real open_output path plays tones."""
    import numpy as np
    import sounddevice as sd

    from hostctl.audio import open_output
    from sims.listen import follow

    tones = [(50.0, -6.0), (1000.0, -6.0), (15000.0, -6.0), (1000.0, -12.0)]
    rec = Recorder(sd)
    waited = rec.start()
    events: list = []
    stop = threading.Event()
    errors: list = []

    def listen() -> None:
        try:
            follow(None, lambda f, lv: events.append((time.monotonic(), f, lv)),
                   stop_event=stop, sample_rate=MONITOR_RATE)
        except Exception as e:  # noqa: BLE001 - reported to the test
            errors.append(repr(e))

    th = threading.Thread(target=listen, daemon=True)
    th.start()
    # follow() reports the first (silent) block once its capture runs. Wait for it: a sound
    # server stream that starts while the output plays can set off an underrun storm.
    t0 = time.monotonic()
    while not events and not errors and time.monotonic() - t0 < 15:
        time.sleep(0.02)
    out = open_output(None, channel="left", level_cap_dbfs=-6.0, settle_s=0.05)
    returned = []
    for f, lv in tones:
        t = time.monotonic()
        out.tone(f, lv)
        returned.append(time.monotonic() - t)
        # Hold each tone >= 0.6 s and until follow() has reported it: on a busy machine the
        # recorder lags, and the next tone must not start before this one was heard.
        _hold_until(lambda f=f, lv=lv: any(ef is not None and abs(ef / f - 1) < 1e-3
                                           and abs(elv - lv) < 0.05 for _, ef, elv in events),
                    0.6, errors)
    out.silence()
    _hold_until(lambda: bool(events) and events[-1][1] is None, 0.4, errors)
    info = {"rate": out.sample_rate, "latency_s": out.latency_s, "fade_n": out.synth.fade_n,
            "device": out.device_name, "history": [list(h) for h in out.synth.history],
            "position": out.synth.position, "tones": tones, "tone_returned_s": returned,
            "capture_wait_s": waited, "underflows": out.underflows}
    out.close()
    stop.set()
    th.join(5)
    x = rec.stop()
    info["events"] = [[t, f, lv] for t, f, lv in events]
    info["follow_errors"] = errors
    np.save(out_dir / "rec.npy", x)
    (out_dir / "info.json").write_text(json.dumps(info))


#: the first cued tone reaches the jack no sooner than this (a silent window read first)
NOT_BEFORE_S = 0.5


def cued(out_dir: Path) -> None:
    """Record the monitor while the real output plays tones queued all at once (cue/wait):
    they must follow each other after their holds, with no output latency between them."""
    import numpy as np
    import sounddevice as sd

    from hostctl.audio import open_output

    tones = [(200.0, -6.0, 0.3), (1000.0, -6.0, 0.25), (3000.0, -9.0, 0.4), (500.0, -6.0, 0.3)]
    rec = Recorder(sd)
    waited = rec.start()
    out = open_output(None, channel="left", level_cap_dbfs=-6.0, settle_s=0.05)
    asked = time.monotonic()
    cues = [out.cue(f, lv, hold, not_before_s=NOT_BEFORE_S if k == 0 else 0.0)
            for k, (f, lv, hold) in enumerate(tones)]
    for c in cues:
        out.wait(c)
    time.sleep(max(0.0, cues[-1].left_s()))
    out.silence(wait=False)            # the fade is started, not waited for
    loud = 0.05 * 10 ** (-12 / 20)
    _hold_until(lambda: _heard_and_ended(rec, loud, 0.3), 0.3, [])
    info = {"rate": out.sample_rate, "latency_s": out.latency_s, "fade_n": out.synth.fade_n,
            "settle_s": out.settle_s, "tones": [[f, lv] for f, lv, _ in tones],
            "holds": [h for _, _, h in tones], "underflows": out.underflows,
            "capture_wait_s": waited, "history": [list(h) for h in out.synth.history],
            "ends_minus_settled": [c.ends_at - c.settled_at for c in cues],
            "first_settled_after_s": cues[0].settled_at - asked,
            "not_before_s": NOT_BEFORE_S}
    out.close()
    np.save(out_dir / "rec.npy", rec.stop())
    (out_dir / "info.json").write_text(json.dumps(info))


def _heard_and_ended(rec: Recorder, loud: float, quiet_s: float) -> bool:
    """A sound above ``loud`` was captured and ``quiet_s`` of quiet followed it."""
    import numpy as np

    x = np.abs(np.concatenate(rec.blocks)[:, 0]) if rec.blocks else np.zeros(0)
    hits = np.flatnonzero(x > loud)
    return bool(hits.size) and x.size - hits[-1] > quiet_s * rec.rate


def record(seconds: float, path: Path) -> None:
    """Capture until the parent writes a line (its sound has been played) and the capture
    holds that sound and 0.5 s of quiet after it -- the monitor lags, and a loaded machine
    may start the player late, so no fixed length would do. ``seconds`` caps the wait."""
    import numpy as np
    import sounddevice as sd

    rec = Recorder(sd)
    rec.start()
    print("READY", flush=True)
    sys.stdin.readline()
    loud = 0.05 * 10 ** (-12 / 20)
    _hold_until(lambda: _heard_and_ended(rec, loud, 0.5), 0.0, [], timeout_s=seconds)
    np.save(path, rec.stop())


if __name__ == "__main__":     # a child of test_audio_loopback (its PYTHONPATH: this checkout)
    if sys.argv[1] == "play":
        play(Path(sys.argv[2]))
    elif sys.argv[1] == "cued":
        cued(Path(sys.argv[2]))
    elif sys.argv[1] == "record":
        record(float(sys.argv[2]), Path(sys.argv[3]))
    else:
        raise SystemExit(f"unknown mode {sys.argv[1]}")
