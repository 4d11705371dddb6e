"""The reply faults of sims/faults.py's one grammar, on both devices that use it.

The virtual bench (``sim://...&faults=garbage@3,...``) and the test fake
(tests/fakeprobe.py, per-verb scripts) answer with the same device core
(sims/device_core.py) and damage a reply the same way (``sims.faults.render_reply``):
hostctl's client must get every command's true answer through each, and count what it met.
"""

from __future__ import annotations

import pytest
from fakeprobe import FakeDevice, FakeSerial

from hostctl.device import Probe, open_probe
from hostctl.errors import DeviceReset, InputError
from sims.bench import make_bench
from sims.faults import REPLY_ACTIONS, parse_faults, render_reply

#: commands 1-2 are HELLO and the first PING; each later one meets one action
ACTIONS = ("garbage", "badcrc", "stray", "split", "half", "err:7", "silent", "echo", "longline")


def test_the_grammar_reads_reply_actions_and_refuses_unknown_ones() -> None:
    spec = ",".join(f"{a}@{n}" for n, a in enumerate(ACTIONS, 3)) + ",dead@40,reset@41"
    cfg = parse_faults(spec)
    assert cfg.replies == {**{n: a for n, a in enumerate(ACTIONS, 3)}, 40: "dead"}
    assert cfg.resets == {41}
    assert parse_faults(str(cfg)).replies == cfg.replies            # round trip
    for bad in ("gargle@2", "err:9@2", "err:x@2", "garbage@0", "split@"):
        with pytest.raises(InputError):
            parse_faults(bad)
    with pytest.raises(InputError, match="unknown reply action"):
        FakeDevice().script("PING", "gargle")
    assert set(ACTIONS) - {"err:7"} <= set(REPLY_ACTIONS)


def test_render_reply_bytes() -> None:
    reply = b"5 OK PING *ABCD\n"
    assert render_reply("ok", b"5 PING", reply) == [(0.0, reply)]
    (_, bad), = render_reply("badcrc", b"5 PING", reply)
    assert bad[:-5] == reply[:-5] and bad != reply and bad.endswith(b"\n")
    parts = render_reply("split", b"5 PING", reply)
    assert b"".join(p for _, p in parts) == reply and parts[1][0] > 0
    assert render_reply("echo", b"5 PING", reply) == [(0.0, b"5 PING\n" + reply)]
    assert render_reply("silent", b"5 PING", reply) == []
    assert render_reply("err:7", b"5 PING", reply)[0][1].startswith(b"5 ERR 7 busy")


def _pings(p: Probe, n: int) -> None:
    for _ in range(n):
        p.ping()


def test_virtual_bench_survives_every_reply_action() -> None:
    spec = ",".join(f"{a}@{n}" for n, a in enumerate(ACTIONS, 3))
    with open_probe(f"sim://?board=notebook&seed=4&faults={spec}", retries=3,
                    timeout_s=0.5) as p:
        _pings(p, 1 + len(ACTIONS))
        bench = p.serial.bench
        bench.set_tone(800.0)
        m = p.measure(100)
        s = dict(p.stats)
    want = make_bench("notebook", 4)
    want.set_tone(800.0)
    assert m.analog[0].rms == pytest.approx(want.measure(100).analog[0].rms, abs=1.0)
    assert s["crc_errors"] >= 1 and s["garbage_lines"] >= 1 and s["stray_lines"] >= 1
    assert s["long_lines"] >= 1 and s["echoes"] >= 1 and s["timeouts"] >= 2   # half, silent
    assert s["retries"] >= 4


def test_fake_and_bench_damage_a_reply_alike() -> None:
    """One command's bytes on the wire: the fake and the bench give the same damage."""
    for action in ACTIONS:
        dev = FakeDevice(boot_s=0.0).script("PING", action)
        dev.boot(0.0)
        dev.take(1.0)
        dev.feed(b"1 PING\n", 1.0)
        fake = dev.take(2.0)
        bench = make_bench("notebook", 0, f"{action}@1")
        bench.boot()
        bench.advance(1.0)
        bench.pop_output(float("inf"))
        bench.host_write(b"1 PING\n")
        bench.advance(1.0)
        wire = bytes(o.b for o in bench.pop_output(float("inf")))
        assert fake == wire, (action, fake, wire)


def test_dead_board_reboots_then_never_answers() -> None:
    """dead@N: the board reboots on the N-th command (its banner comes) and is silent after;
    the fake's scripted ``dead`` is the same fault."""
    with open_probe("sim://?board=notebook&faults=dead@2", timeout_s=0.3,
                    boot_timeout_s=0.8) as p:
        with pytest.raises(DeviceReset, match="reset during 'PING' and did not come back"):
            p.ping()
        assert p.serial.bench.boots == 2 and p.serial.bench.dead
    dev = FakeDevice(boot_s=0.0).script("PING", "dead")
    p = Probe("fake0", serial_obj=FakeSerial(dev, port="fake0"), timeout_s=0.3,
              boot_timeout_s=0.8)
    with pytest.raises(DeviceReset, match="reset during 'PING' and did not come back"):
        p.ping()
    assert dev.boots == 2 and dev.mode == "mute"
