"""The virtual bench: device core vs the firmware vectors, physics, time, faults, pty."""

from __future__ import annotations

import codecs
import json
import math
import os
import select
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import serial
from hypothesis import given, settings
from hypothesis import strategies as st

from hostctl import protocol as p
from hostctl.errors import InputError
from sims.bench import VirtualBench, load_board, make_bench
from sims.device_core import DeviceCore, Window
from sims.faults import parse_faults

ROOT = Path(__file__).resolve().parent.parent
SESSION = ROOT / "firmware" / "vectors" / "session.txt"

if "sims" not in serial.protocol_handler_packages:
    serial.protocol_handler_packages.append("sims")


def _samples(s: str) -> list[int]:
    xs: list[int] = []
    for t in s.split(","):
        v, _, k = t.partition("*")
        xs += [int(v)] * int(k or 1)
    return xs


# --- device core == firmware, byte for byte ---------------------------------------------

def test_device_core_matches_firmware_session_vectors():
    if not SESSION.exists():
        pytest.skip(f"{SESSION} not present (helper FIRMWARE has not written it)")
    armed: list[Window] = []

    def measure(ms: int) -> Window:
        return armed.pop(0)

    core: DeviceCore | None = None
    produced: list[bytes] = []
    expected: list[bytes] = []
    where = ""
    checked = 0

    def flush() -> None:
        nonlocal checked
        assert produced == expected, f"session.txt {where}"
        checked += len(expected)
        produced.clear()
        expected.clear()

    for lineno, line in enumerate(SESSION.read_text(encoding="ascii").split("\n"), 1):
        if not line or line.startswith("#"):
            continue
        kind, _, rest = line.partition(" ")
        if kind == "reply":
            expected.append(rest.encode("ascii") + b"\n")
            continue
        flush()
        where = f"line {lineno}: {line[:60]}"
        if kind == "reset":
            core = DeviceCore(measure, nominal_rate_hz=int(rest))
            armed.clear()
            produced.append(core.reset())
        elif kind == "window":
            kv = dict(tok.split("=", 1) for tok in rest.split())
            w = Window([_samples(kv[f"a{i}"]) for i in range(4)],
                       [_samples(kv[f"d{i}"]) for i in (2, 3, 4)],
                       int(kv["ms"]), int(kv["us"]))
            assert w.n == int(kv["n"])
            armed.append(w)
        elif kind == "send":
            assert core is not None
            produced.extend(core.feed(codecs.escape_decode(rest.encode("ascii"))[0]))
        else:
            raise AssertionError(f"session.txt:{lineno}: unknown record {kind}")
    flush()
    assert checked > 50


def test_device_core_errors_and_limits():
    core = DeviceCore(lambda ms: Window([[512]] * 4, [1, 0, 0], ms, ms * 1000, True),
                      nominal_rate_hz=5700)

    def one(b: bytes) -> bytes:
        out = core.feed(b)
        assert len(out) == 1, (b, out)
        return out[0]

    assert one(b"1 BLINK\n") == p.with_crc("1 ERR 1 unknown-command")
    assert one(b"2 PING x\n") == p.with_crc("2 ERR 2 bad-syntax")
    assert one(b"x" * 80 + b"\n") == p.with_crc("0 ERR 3 line-too-long")
    assert one(b"3 PING *0000\n") == p.with_crc("3 ERR 4 bad-crc")
    assert one(b"4 MEASURE 5001\n") == p.with_crc("4 ERR 5 bad-argument")
    assert one(b"5 HELLO 2 9\n") == p.with_crc("5 ERR 6 unsupported-version")
    assert one(b"6 PI\x01NG\n") == p.with_crc("6 ERR 2 bad-syntax")
    ok79 = b"7 PING" + b" " * 0
    assert one(ok79 + b"\n") == p.with_crc("7 OK PING")
    r = p.parse_measure(p.parse_reply(one(p.encode_command(8, "MEASURE", 3))))
    assert (r.ms, r.n, r.rate_hz, r.led_lit) == (3, 1, 333, (1, 0, 0))
    assert core.feed(b"\r\n") == []


# --- physics -----------------------------------------------------------------------------

def test_boards_load_with_tomllib():
    import tomllib

    for name in ("notebook", "bench", "lowpass"):
        data = tomllib.loads((ROOT / "sims" / "boards" / f"{name}.toml").read_text())
        assert data["circuit"]
        b = load_board(name)
        assert b.name == name
    with pytest.raises(InputError, match="unknown board"):
        load_board("no-such-board")


def test_notebook_board_values_and_led_threshold():
    from hostctl.circuits import NOTEBOOK_VALUES

    b = make_bench("notebook", seed=5)
    assert b.true_values == NOTEBOOK_VALUES
    assert all(c == 1e-6 for c in b.true_capacitances.values())
    thr = b.led_threshold_v(0)
    assert thr == pytest.approx(10 ** (-6 / 20) / math.sqrt(2), rel=1e-12)
    levels = b.analog_levels(800.0, -6.0)
    assert levels[0] == (2.5, pytest.approx(10 ** (-6 / 20)))
    # ngspice's AC sweep, interpolated in log f (sims/spice.py): within 1e-7 of the closed form
    assert levels[1][1] / levels[0][1] == pytest.approx(1 / math.sqrt(2), rel=1e-7)


def test_bench_board_tolerances_are_seeded():
    a, b, c = make_bench("bench", seed=1), make_bench("bench", seed=1), make_bench("bench", seed=2)
    assert a.true_values == b.true_values and a.true_values != c.true_values
    nominal = load_board("bench").resistors
    for k, v in a.true_values.items():
        assert abs(v / nominal[k] - 1) <= 0.05
    for v in a.true_capacitances.values():
        assert abs(v / 1e-6 - 1) <= 0.10
    assert a.adc_noise_lsb == 0.5 and a.led_threshold_v(2) == 0.3


def test_notebook_800hz_gain_and_led_edges():
    b = make_bench("notebook", seed=3)
    b.boot()
    b.set_tone(800.0, -6.0)
    r = b.measure(500)
    a0, a1 = r.analog[0], r.analog[1]
    # 0.501 V peak = 102.7 counts peak = 72.6 counts rms; quantization error << 1 %
    assert a0.rms == pytest.approx(10 ** (-6 / 20) / 5 * 1024 / math.sqrt(2), rel=0.005)
    assert a1.rms / a0.rms == pytest.approx(1 / math.sqrt(2), abs=0.003)
    assert 511 <= a0.mean <= 513
    b.set_tone(780.0)
    lit_below = b.measure(200).led_lit[0]
    b.set_tone(820.0)
    lit_above = b.measure(200).led_lit[0]
    assert lit_below > 0 and lit_above == 0
    # band LED: on between ~1075 and ~3721 Hz (the notebook's band-pass)
    b.set_tone(2000.0)
    assert b.measure(200).led_lit[1] > 0
    b.set_tone(1000.0)
    assert b.measure(200).led_lit[1] == 0


def test_silence_is_bias_and_missing_channels_stay_at_bias():
    b = make_bench("notebook")
    b.boot()
    r = b.measure(100)
    assert all((s.mean, s.rms, s.min, s.max) == (512.0, 0.0, 512, 512) for s in r.analog)
    assert r.led_lit == (0, 0, 0)
    lp = make_bench("lowpass", seed=1)
    lp.boot()
    lp.set_tone(300.0, -6.0)
    r = lp.measure(200)
    assert r.analog[1].rms > 40 and r.analog[2].rms < 1.0 and r.analog[3].rms < 1.0
    assert r.led_lit[0] > 0 and r.led_lit[1:] == (0, 0)


def test_bench_board_noise_and_gain():
    b = make_bench("bench", seed=7)
    b.boot()
    b.set_tone(None)
    r = b.measure(500)
    assert 0.3 < r.analog[0].rms < 0.8            # 0.5 LSB gaussian + quantization
    f = 1500.0
    b.set_tone(f, -6.0)
    r = b.measure(1000)
    true = b.analog_levels(f, -6.0)
    for ch in (1, 2, 3):
        g_meas = r.analog[ch].rms / r.analog[0].rms
        assert g_meas == pytest.approx(true[ch][1] / true[0][1], abs=0.01)
    with pytest.raises(InputError):
        b.set_tone(30000.0)
    with pytest.raises(InputError):
        b.set_tone(1000.0, 3.0)


def test_window_timing_and_rate():
    b = make_bench("notebook")
    b.boot()
    b.measure(1)
    t0 = b.now_s
    r = b.measure(200)
    assert r.n == math.ceil(0.2 * 5751) and r.rate_hz in (5750, 5751)
    assert 200 <= r.ms <= 201
    dt = b.now_s - t0
    reply_bytes = 150 + 20
    assert 0.2 < dt < 0.2 + 2 * reply_bytes * 10 / 115200


# --- pyserial URL handler ----------------------------------------------------------------

def test_sim_url_boot_banner_and_handshake():
    ser = serial.serial_for_url("sim://?board=notebook&seed=3", timeout=1.0)
    assert isinstance(ser.bench, VirtualBench)
    banner = p.parse_reply(ser.readline())
    assert banner.is_async and banner.verb == "BOOT" and banner.fields["proto"] == "1"
    ser.write(p.encode_command(1, "HELLO", 1, 1))
    hello = p.parse_reply(ser.readline())
    assert hello.ok and hello.id == 1 and hello.fields["rate_hz"] == "5700"
    ser.close()


def _count_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Every time.sleep asked for (still slept): simulated waits must ask for none of note.
    What is checked is what the code does, not how fast this machine runs it."""
    asked: list[float] = []
    real = time.sleep

    def sleep(s: float) -> None:
        asked.append(s)
        real(s)

    monkeypatch.setattr(time, "sleep", sleep)
    return asked


def test_sim_time_advances_not_wall_clock(monkeypatch: pytest.MonkeyPatch):
    ser = serial.serial_for_url("sim://?board=notebook", timeout=5.0)
    ser.readline()
    ser.bench.set_tone(800.0)
    t_sim = ser.bench.now_s
    slept = _count_sleeps(monkeypatch)
    ser.write(p.encode_command(2, "MEASURE", 3000))
    r = p.parse_measure(p.parse_reply(ser.readline()))
    assert r.ms >= 3000
    assert ser.bench.now_s - t_sim >= 3.0
    assert sum(slept) < 0.1                  # nothing slept the 3 s simulated
    # a read with nothing coming advances simulated time by exactly the timeout
    t = ser.bench.now_s
    assert ser.read(10) == b""
    assert ser.bench.now_s == pytest.approx(t + 5.0)


def _session_bytes(url: str, n: int = 12) -> bytes:
    ser = serial.serial_for_url(url, timeout=0.5)
    ser.bench.set_tone(1200.0)
    got = bytearray(ser.read(200))
    for i in range(1, n + 1):
        ser.write(p.encode_command(i, "MEASURE" if i % 2 else "PING", *((50,) if i % 2 else ())))
        got += ser.read(400)
    ser.close()
    return bytes(got)


def test_same_seed_same_bytes():
    url = "sim://?board=bench&seed=11&faults=corrupt:0.01,drop:0.01"
    a, b = _session_bytes(url), _session_bytes(url)
    assert a == b and len(a) > 500
    assert _session_bytes(url.replace("seed=11", "seed=12")) != a


def _lines(data: bytes) -> list[bytes]:
    return [ln for ln in data.split(b"\n") if ln]


def test_byte_faults_break_some_replies():
    data = _session_bytes("sim://?board=bench&seed=4&faults=drop:0.004,corrupt:0.004,dup:0.002", 40)
    good = bad = 0
    for ln in _lines(data):
        try:
            p.parse_reply(ln)
            good += 1
        except p.ProtocolError:
            bad += 1
    assert good > 10 and bad > 0
    clean = _session_bytes("sim://?board=bench&seed=4", 40)
    assert all(p.parse_reply(ln) for ln in _lines(clean))
    assert len(_lines(clean)) == 41


def test_reset_fault_sends_banner_and_drops_command():
    ser = serial.serial_for_url("sim://?board=notebook&faults=reset@3", timeout=1.0)
    assert p.parse_reply(ser.readline()).verb == "BOOT"
    for i in (1, 2):
        ser.write(p.encode_command(i, "PING"))
        assert p.parse_reply(ser.readline()).id == i
    ser.write(p.encode_command(3, "PING"))
    line = p.parse_reply(ser.readline())
    assert line.is_async and line.verb == "BOOT"     # no reply to 3: it died with the board
    ser.write(p.encode_command(4, "PING"))
    assert p.parse_reply(ser.readline()).id == 4
    assert ser.bench.boots == 2


def test_delay_fault_times_out_then_arrives_late():
    ser = serial.serial_for_url("sim://?board=notebook&faults=delay:2.0@2", timeout=1.0)
    ser.readline()
    ser.write(p.encode_command(1, "PING"))
    assert p.parse_reply(ser.readline()).id == 1
    ser.write(p.encode_command(2, "PING"))
    t = ser.bench.now_s
    assert ser.readline() == b""                     # the host's 1 s timeout fires
    assert ser.bench.now_s == pytest.approx(t + 1.0)
    ser.timeout = 3.0
    assert p.parse_reply(ser.readline()).id == 2     # ... and the reply comes late
    assert ser.bench.now_s == pytest.approx(t + 2.0, abs=0.01)


def test_disconnect_fault_raises_serial_exception():
    ser = serial.serial_for_url("sim://?board=notebook&faults=disconnect@2", timeout=1.0)
    ser.readline()
    ser.write(p.encode_command(1, "PING"))
    ser.readline()
    ser.write(p.encode_command(2, "PING"))
    with pytest.raises(serial.SerialException):
        ser.read(1)
    with pytest.raises(serial.SerialException):
        ser.write(b"3 PING\n")


def test_fault_grammar():
    c = parse_faults("drop:0.01,corrupt:0.02,dup:0.03,delay:2.0@5,reset@7,disconnect@9")
    assert (c.drop, c.corrupt, c.dup) == (0.01, 0.02, 0.03)
    assert c.delays == {5: 2.0} and c.resets == {7} and c.disconnects == {9}
    assert parse_faults(str(c)) == c
    for bad in ("drop:2", "reset@0", "bogus", "delay:2", "dup:x"):
        with pytest.raises(InputError):
            parse_faults(bad)
    with pytest.raises(serial.SerialException, match="unknown board"):
        serial.serial_for_url("sim://?board=nope")
    with pytest.raises(serial.SerialException, match="unknown option"):
        serial.serial_for_url("sim://?colour=red")


# --- the real pseudo-terminal process ----------------------------------------------------

@pytest.fixture
def pty_server():
    proc = subprocess.Popen([sys.executable, "-m", "sims.bench", "serve", "--board", "notebook",
                             "--seed", "1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=ROOT)
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        if not ready:
            pytest.fail("sims.bench serve printed nothing in 60 s")
        pty_line = proc.stdout.readline().split()
        ctl_line = proc.stdout.readline().split()
        assert pty_line[0] == "PTY" and ctl_line[0] == "CONTROL", (pty_line, ctl_line)
        yield proc, pty_line[1], ctl_line[1]
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _control(path: str, req: dict) -> dict:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        s.sendall((json.dumps(req) + "\n").encode())
        buf = b""
        while not buf.endswith(b"\n"):
            chunk = s.recv(65536)
            assert chunk
            buf += chunk
    return json.loads(buf)


def test_pty_server_end_to_end(pty_server):
    proc, pty_path, ctl = pty_server
    assert os.path.exists(pty_path) and os.path.exists(ctl)
    ser = serial.Serial(pty_path, 115200, timeout=5)
    try:
        banner = p.parse_reply(ser.readline())
        assert banner.verb == "BOOT"
        ser.write(p.encode_command(1, "HELLO", 1, 1))
        assert p.parse_reply(ser.readline()).ok
        resp = _control(ctl, {"tone_hz": 800.0, "level_dbfs": -6.0})
        assert resp["ok"] is True
        t_sim = resp["sim_time_s"]
        ser.write(p.encode_command(2, "MEASURE", 400))
        r = p.parse_measure(p.parse_reply(ser.readline()))
        assert r.analog[1].rms / r.analog[0].rms == pytest.approx(1 / math.sqrt(2), abs=0.004)
        _control(ctl, {"tone_hz": 760.0})
        ser.write(p.encode_command(3, "MEASURE", 200))
        assert p.parse_measure(p.parse_reply(ser.readline())).led_lit[0] > 0
        _control(ctl, {"tone_hz": None})
        ser.write(p.encode_command(4, "MEASURE", 100))
        r = p.parse_measure(p.parse_reply(ser.readline()))
        assert r.analog[0].rms == 0.0 and r.analog[0].mean == 512.0
        state = _control(ctl, {"get": "state"})
        assert state["board"] == "notebook" and state["windows"] == 3
        assert state["sim_time_s"] >= t_sim + 0.7
        bad = _control(ctl, {"tone_hz": -5})
        assert bad["ok"] is False and "positive" in bad["error"]
    finally:
        ser.close()
    # reopening the port reboots the board (DTR reset): a fresh banner
    time.sleep(0.3)
    ser = serial.Serial(pty_path, 115200, timeout=5)
    try:
        assert p.parse_reply(ser.readline()).verb == "BOOT"
    finally:
        ser.close()
    proc.terminate()
    assert proc.wait(10) == 0
    assert not os.path.exists(ctl)


# --- robustness: any bytes in, only well-formed replies out ------------------------------

@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=100),
                          st.sampled_from([b"\n", b"1 PING\n", b"2 MEASURE 5\n", b"3 HELLO 1 1\r\n",
                                           b"*", b" ", b"\r"])), max_size=12))
def test_device_core_any_bytes_give_valid_replies(chunks):
    core = DeviceCore(lambda ms: Window([[1, 2]] * 4, [0, 1, 2], ms, ms * 1000, True),
                      nominal_rate_hz=5700)
    data = b"".join(chunks)
    replies = core.feed(data)
    assert len(replies) <= data.count(b"\n")
    for r in replies:
        assert r.endswith(b"\n") and len(r) < 400
        parsed = p.parse_reply(r)                     # never a CRC/syntax error
        assert parsed.id is not None and (parsed.ok or parsed.err_code in p.ERRORS)


def test_pty_disconnect_fault():
    proc = subprocess.Popen([sys.executable, "-m", "sims.bench", "serve", "--faults",
                             "disconnect@2"], stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        pty_path = proc.stdout.readline().split()[1]
        proc.stdout.readline()
        ser = serial.Serial(pty_path, 115200, timeout=5)
        assert p.parse_reply(ser.readline()).verb == "BOOT"
        ser.write(p.encode_command(1, "PING"))
        assert p.parse_reply(ser.readline()).id == 1
        ser.write(p.encode_command(2, "PING"))
        with pytest.raises(serial.SerialException):
            ser.readline()
        ser.close()
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_host_client_survives_faults_in_simulated_time(monkeypatch: pytest.MonkeyPatch):
    device = pytest.importorskip("hostctl.device", reason="helper CLIENT's hostctl/device.py")
    url = "sim://?board=notebook&seed=2&faults=delay:3.0@3,reset@5"
    ser = serial.serial_for_url(url, timeout=0.02)
    slept = _count_sleeps(monkeypatch)
    with device.Probe(url, serial_obj=ser, clock=lambda: ser.bench.now_s) as probe:
        ser.bench.set_tone(800.0)
        ratios = [(r.analog[1].rms / r.analog[0].rms) for r in
                  (probe.measure(200) for _ in range(6))]
    assert all(abs(x - 1 / math.sqrt(2)) < 0.006 for x in ratios)
    assert ser.bench.boots == 2 and ser.bench.now_s > 3.0
    assert sum(slept) < 1.0                 # simulated waits: no real 3 s timeouts


def test_board_wiring_comes_from_its_netlist():
    """A board whose netlist puts its one output on A2 is read on A2 and lights D3: the
    virtual probe wires each board as its netlist says, not in a fixed channel order."""
    import numpy as np

    from sims.boards import netlist_nodes
    from sims.physics import phasors_at

    pins, leds = netlist_nodes("*@ channels ref=a0 low=a2\n*@ leds low=out\nR1 in a2 1k\n")
    assert pins == {"ref": "a0", "low": "a2"} and leds == {"low": "out"}

    def resp(f):
        return {"a0": np.array([1.0 + 0j]), "a2": np.array([0.5j]), "out": np.array([0.25 + 0j])}

    ph = phasors_at(resp, pins, leds, 1000.0)
    assert ph.pins == [1.0, 0j, 0.5j, 0j]
    assert ph.leds == [0j, 0.25, 0j]
