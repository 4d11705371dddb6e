"""hostctl.device and the `probe`/`devices` commands across a REAL pseudo-terminal.

The fake probe (tests/fakeprobe.py) is served by a thread on the pty master; the client
opens the slave path exactly like /dev/ttyACM0 (pyserial's posix Serial, termios and
all). Also: loop:// (echo), the CLI's exit codes and printed numbers, and the virtual
bench's sim:// URL.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
import serial
from fakeprobe import EXAMPLE_MEASURE, FakeDevice, PtyFake

from hostctl.device import Probe, open_probe
from hostctl.errors import DeviceError, DeviceReset, DeviceTimeout
from hostctl.protocol import with_crc

pytestmark = pytest.mark.skipif(not hasattr(os, "openpty"), reason="needs os.openpty (POSIX)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def hostctl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hostctl", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT)


# --------------------------------------------------------------------------- pty: library
def test_pty_handshake_and_exact_measure():
    with PtyFake(FakeDevice(measure_fields=EXAMPLE_MEASURE)) as fake:
        assert fake.path.startswith("/dev/")
        with open_probe(fake.path, timeout_s=0.5, boot_timeout_s=2.0) as p:
            assert isinstance(p.serial, serial.Serial)
            assert p.info["fw"] == "hostctl-probe/1.0.0"
            m = p.measure(200)
            assert (m.n, m.rate_hz, m.led_lit) == (480, 2400, (0, 120, 0))
            assert m.analog[2].rms == pytest.approx(36.059)
            assert p.ping() > 0                   # a round trip, in seconds
        # what crossed the pty: our HELLO, MEASURE and PING lines, each with a CRC
        sent = bytes(fake.received).splitlines()
        assert [ln.split(b" ")[1] for ln in sent] == [b"HELLO", b"MEASURE", b"PING"]
        assert all(with_crc(ln.rsplit(b" ", 1)[0].decode()) == ln + b"\n" for ln in sent)


def test_pty_reset_on_open_waits_for_banner():
    dev = FakeDevice(boot_s=0.3)
    with PtyFake(dev, boot_on_first_byte=True) as fake:
        t0 = time.monotonic()
        with open_probe(fake.path, timeout_s=0.5, boot_timeout_s=3.0) as p:
            took = time.monotonic() - t0
            assert p.boot_banner is not None and p.info["proto"] == "1"
    assert took >= 0.3                                  # waited for the boot ...
    assert dev.boots == 1 and len(dev.lines_in) == 1    # first HELLO swallowed by the boot


def test_pty_noisy_line_every_fault_survived():
    dev = FakeDevice(late_s=0.4).script("MEASURE", "garbage", "badcrc", "stray", "late",
                                       "longline", "split", "echo")
    with PtyFake(dev) as fake, open_probe(fake.path, timeout_s=0.25, retries=3) as p:
        results = [p.measure(20) for _ in range(7)]
        time.sleep(0.3)            # let the late reply arrive; the next command drops it
        p.ping()
        s = p.stats
    assert all(m.n == 48 for m in results)
    assert s["garbage_lines"] >= 1 and s["crc_errors"] == 1 and s["long_lines"] == 1
    assert s["stray_lines"] == 2 and s["echoes"] == 1
    assert s["timeouts"] == 1 and s["retries"] == 2 and s["resets"] == 0


def test_pty_reset_mid_session():
    dev = FakeDevice(boot_s=0.2).script("MEASURE", "reset")
    with PtyFake(dev) as fake, open_probe(fake.path, timeout_s=0.5) as p:
        assert p.measure(50).n == 120
        assert p.stats["resets"] == 1
    assert dev.boots == 1          # the pty fake starts already running: this is the reset


def test_pty_reset_that_never_comes_back():
    dev = FakeDevice(boot_s=0.1).script("PING", "dead")
    with PtyFake(dev) as fake, open_probe(fake.path, timeout_s=0.3, boot_timeout_s=0.8) as p:
        with pytest.raises(DeviceReset, match="reset during 'PING' and did not come back"):
            p.ping()


def test_pty_silence_times_out_cleanly():
    dev = FakeDevice().script("MEASURE", *["silent"] * 3)
    with PtyFake(dev) as fake, open_probe(fake.path, timeout_s=0.2, retries=2) as p:
        t0 = time.monotonic()
        with pytest.raises(DeviceTimeout, match=rf"no reply from {fake.path} to 'MEASURE 10' "
                                                r"after 3 tries"):
            p.measure(10)
        assert time.monotonic() - t0 >= 0.6                 # 3 tries x 0.2 s, all waited


def test_pty_mute_device_no_answer():
    with PtyFake(FakeDevice(mode="mute")) as fake:
        with pytest.raises(DeviceTimeout, match=f"no answer from {fake.path}"):
            open_probe(fake.path, boot_timeout_s=0.6)


# --------------------------------------------------------------------------- loop://
def test_loop_url_is_rejected_as_echo():
    with pytest.raises(DeviceError, match="loop:// only echoes our commands back"):
        open_probe("loop://", boot_timeout_s=0.6)


def test_loop_url_own_command_is_never_taken_as_reply():
    """Seed loop:// with a HELLO reply; then MEASURE only ever sees its own echo."""
    ser = serial.serial_for_url("loop://", timeout=0.02)
    ser.write(with_crc("1 OK HELLO proto=1 fw=hostctl-probe/1.0.0 adc_bits=10 vref_mv=5000"))
    p = Probe("loop://", serial_obj=ser, timeout_s=0.1, retries=1, boot_timeout_s=0.5)
    assert p.info["fw"] == "hostctl-probe/1.0.0"
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"no reply from loop:// to 'MEASURE 5' after 2"):
        p.measure(5)
    # both tries waited their 0.1 s time-out; the upper bound only catches a retry loop that
    # never ends (a busy machine can take seconds)
    assert 0.2 <= time.monotonic() - t0 < 60
    assert p.stats["echoes"] >= 2          # both MEASURE lines came back and were refused
    p.close()


# --------------------------------------------------------------------------- CLI
def test_cli_probe_prints_numbers_in_counts_and_volts():
    with PtyFake(FakeDevice(measure_fields=EXAMPLE_MEASURE)) as fake:
        r = hostctl("probe", "--port", fake.path, "--ms", "200")
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert "hostctl-probe/1.0.0" in out and "protocol 1" in out
    a0 = next(ln for ln in out.splitlines() if ln.startswith("A0 reference"))
    # mean 511.734 counts = 2.4987 V; rms 72.118 counts = 0.3521 V (5000 mV / 1024)
    assert a0.split()[2:] == ["511.734", "2.4987", "72.118", "0.3521", "409", "614"]
    a2 = next(ln for ln in out.splitlines() if ln.startswith("A2 band"))
    assert "36.059" in a2 and "0.1761" in a2 and "D3  25.0% (120/480)" in a2
    assert "480 rounds in 200 ms, 2400 Hz per channel" in out
    assert "link: 0 retries" in out


def test_cli_probe_json():
    with PtyFake(FakeDevice(measure_fields=EXAMPLE_MEASURE)) as fake:
        r = hostctl("probe", "--port", fake.path, "--json")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    ch = d["measure"]["channels"]
    assert ch[3]["rms"] == pytest.approx(7.211)
    assert ch[0]["rms_v"] == pytest.approx(72.118 * 5.0 / 1024)
    assert [x["fraction"] for x in d["measure"]["leds"]] == [0.0, 0.25, 0.0]
    assert d["info"]["vref_mv"] == "5000" and d["stats"]["retries"] == 0


def test_cli_probe_missing_port_is_one_line():
    r = hostctl("probe", "--port", "/dev/does-not-exist")
    assert r.returncode == 3
    assert r.stdout == ""
    assert r.stderr == ("hostctl: error: no such port /dev/does-not-exist "
                        "(see `hostctl devices`)\n")


def test_cli_probe_mute_device_is_one_line():
    with PtyFake(FakeDevice(mode="mute")) as fake:
        r = hostctl("probe", "--port", fake.path, "--boot-timeout", "0.5")
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert f"no answer from {fake.path}" in r.stderr


def test_cli_probe_not_a_probe_is_one_line():
    with PtyFake(FakeDevice(mode="chatter")) as fake:
        r = hostctl("probe", "--port", fake.path, "--boot-timeout", "0.7")
    assert r.returncode == 3
    assert r.stderr.count("\n") == 1 and "is not a hostctl probe" in r.stderr


def test_cli_devices_marks_the_probe():
    with PtyFake(FakeDevice()) as fake:
        r = hostctl("devices", "--json", "--port", fake.path, "--port", "loop://",
                    "--boot-timeout", "1.0")
    assert r.returncode == 0, r.stderr
    d = json.loads(r.stdout)
    by = {p["device"]: p for p in d["serial_ports"]}
    assert by[fake.path]["handshake"] == {"probe": True, "fw": "hostctl-probe/1.0.0",
                                          "proto": "1", "board": "uno"}
    assert by["loop://"]["handshake"]["probe"] is False
    assert "echoes" in by["loop://"]["handshake"]["reason"]
    # audio: either devices or one reason saying how to fix it
    assert d["audio_outputs"] or isinstance(d["audio_problem"], str)


def test_cli_devices_text_no_probe():
    r = hostctl("devices", "--no-probe")
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Serial ports:\n") and "Audio output devices:" in r.stdout
    assert "->" not in r.stdout          # nothing was opened


# --------------------------------------------------------------------------- sim://
def _sim_available() -> bool:
    try:
        import sims.protocol_sim  # noqa: F401
    except Exception:  # noqa: BLE001
        return False
    return True


@pytest.mark.skipif(not _sim_available(), reason="sims/protocol_sim.py (helper BENCH) missing")
@pytest.mark.parametrize("freq", [200.0, 1000.0, 4000.0])
def test_sim_notebook_gain_ratio(freq):
    with open_probe("sim://?board=notebook&seed=1") as p:
        bench = p.serial.bench
        bench.set_tone(freq, -6.0)
        m = p.measure(500)
        want = bench.gains(freq)
        ref = m.analog[0].rms
        assert ref == pytest.approx(bench.amplitude_v(-6.0) / 2 ** 0.5 * 1024 / 5.0, rel=0.01)
        for ch in (1, 2, 3):
            got = m.analog[ch].rms / ref
            # quantization (no noise on the notebook board): 1 count rms at most
            assert got == pytest.approx(want[ch], abs=1.5 / ref), (ch, got, want[ch])
        assert p.stats["retries"] == 0


@pytest.mark.skipif(not _sim_available(), reason="sims/protocol_sim.py (helper BENCH) missing")
def test_sim_faults_survived_with_counters():
    url = "sim://?board=notebook&seed=2&faults=delay:2.0@4,reset@6"
    with open_probe(url, retries=3) as p:
        p.serial.bench.set_tone(500)
        rms = [p.measure(100).analog[0].rms for _ in range(6)]
        assert p.stats["resets"] == 1 and p.stats["timeouts"] >= 1
    assert max(rms) - min(rms) < 2.0


@pytest.mark.skipif(not _sim_available(), reason="sims/protocol_sim.py (helper BENCH) missing")
def test_cli_probe_sim_tone():
    r = hostctl("probe", "--port", "sim://?board=notebook", "--sim-tone", "1000", "--json")
    assert r.returncode == 0, r.stderr
    ch = json.loads(r.stdout)["measure"]["channels"]
    assert ch[0]["rms"] > 50 and 0.5 < ch[2]["rms"] / ch[0]["rms"] < 0.8   # band near 0.69
