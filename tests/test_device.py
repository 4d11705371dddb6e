"""hostctl.device against an in-process fake probe: handshake, ids, every failure path.

Timeouts are small (0.1-0.3 s) so the whole file runs in a few seconds.
"""

from __future__ import annotations

import time

import pytest
from fakeprobe import EXAMPLE_MEASURE, FakeDevice, FakeSerial

from hostctl.device import MAX_LINE, MAX_RESETS_PER_COMMAND, Probe, open_probe
from hostctl.errors import DeviceError, DeviceReset, DeviceTimeout, ProtocolError
from hostctl.protocol import with_crc

T = 0.15          # per-command timeout used throughout


def connect(dev: FakeDevice | None = None, **kw) -> tuple[Probe, FakeDevice]:
    dev = dev or FakeDevice()
    kw.setdefault("timeout_s", T)
    kw.setdefault("boot_timeout_s", 1.5)
    kw.setdefault("retries", 2)
    probe = Probe("fake0", serial_obj=FakeSerial(dev, port="fake0"), **kw)
    return probe, dev


def verbs(dev: FakeDevice) -> list[str]:
    return [ln.split(b" ")[1].decode() for ln in dev.lines_in]


# --------------------------------------------------------------------------- handshake
def test_handshake_waits_for_boot_banner_and_reads_identity():
    t0 = time.monotonic()
    probe, dev = connect(FakeDevice(boot_s=0.2))
    took = time.monotonic() - t0
    assert probe.info["fw"] == "hostctl-probe/1.0.0"
    assert probe.info["adc_bits"] == "10" and probe.info["vref_mv"] == "5000"
    assert probe.boot_banner == {"fw": "hostctl-probe/1.0.0", "proto": "1"}
    # the HELLO sent during the bootloader was swallowed; the banner triggered a new one
    assert verbs(dev) == ["HELLO"]
    assert took >= 0.2
    # the answered HELLO was sent on the banner, not by the 0.5 s re-send timer
    assert dev.times_in[0] - dev.boot_ends[0] < 0.2
    assert dev.lines_in[0].startswith(b"2 HELLO 1 1 *")
    assert probe.stats["resets"] == 0


def test_handshake_without_banner_resends_hello():
    t0 = time.monotonic()
    probe, dev = connect(FakeDevice(boot_s=0.3, banner=False))
    took = time.monotonic() - t0
    assert probe.info["proto"] == "1"
    assert took >= 0.45                # no banner: only the re-send timer (0.5 s) ...
    assert verbs(dev) == ["HELLO"]
    assert dev.lines_in[0].startswith(b"2 HELLO")   # ... whose first re-send got through


def test_no_answer_at_all_is_a_timeout_naming_the_port():
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout, match=r"no answer from fake0 within 0\.[0-9] s"):
        connect(FakeDevice(mode="mute"), boot_timeout_s=0.6)
    assert time.monotonic() - t0 >= 0.6              # it waited the whole boot time-out


def test_other_gadget_is_not_a_probe():
    with pytest.raises(DeviceError, match="answers but is not a hostctl probe") as ei:
        connect(FakeDevice(mode="chatter"), boot_timeout_s=0.6)
    assert not isinstance(ei.value, DeviceTimeout)
    assert "GPGGA" in str(ei.value) or "gadget" in str(ei.value)


def test_echoing_port_is_not_a_probe():
    with pytest.raises(DeviceError, match="only echoes our commands"):
        connect(FakeDevice(mode="echo"), boot_timeout_s=0.6)


def test_version_mismatch_names_both_versions_from_banner():
    with pytest.raises(DeviceError, match=r"speaks protocol 2 .*this hostctl speaks protocol 1"):
        connect(FakeDevice(mode="proto2"))


def test_version_mismatch_without_banner_asks_id():
    with pytest.raises(DeviceError, match=r"speaks protocol 2 \(firmware hostctl-probe/1.0.0\)"):
        connect(FakeDevice(mode="proto2", banner=False, boot_s=0.0))


def test_hello_unknown_command_is_incompatible_firmware():
    dev = FakeDevice(boot_s=0.0).script("HELLO", "err:1", "err:1", "err:1")
    with pytest.raises(DeviceError, match="not a compatible hostctl probe firmware"):
        connect(dev)


def test_one_err_to_hello_is_line_damage_not_a_reflash():
    # e.g. another program typed into the port, or the HELLO was damaged: ask again
    probe, dev = connect(FakeDevice(boot_s=0.0).script("HELLO", "err:1", "err:5"))
    assert probe.info["proto"] == "1"
    assert verbs(dev) == ["HELLO"] * 3


def test_no_such_port():
    with pytest.raises(DeviceError) as ei:
        open_probe("/dev/ttyXYZ", boot_timeout_s=0.5)
    assert str(ei.value) == "no such port /dev/ttyXYZ (see `hostctl devices`)"


def test_unknown_url_scheme():
    with pytest.raises(DeviceError, match="cannot open nope://x: invalid URL"):
        open_probe("nope://x")


# --------------------------------------------------------------------------- commands
def test_measure_parses_exact_numbers_and_ids_count_up():
    probe, dev = connect(FakeDevice(measure_fields=EXAMPLE_MEASURE))
    m = probe.measure(200)
    assert (m.ms, m.n, m.rate_hz) == (200, 480, 2400)
    assert m.analog[0].mean == pytest.approx(511.734) and m.analog[0].rms == pytest.approx(72.118)
    assert (m.analog[0].min, m.analog[0].max) == (409, 614)
    assert m.led_lit == (0, 120, 0) and m.led_fraction[1] == pytest.approx(0.25)
    probe.ping()
    ids = [int(ln.split(b" ")[0]) for ln in dev.lines_in]
    assert ids == [2, 3, 4]        # HELLO 1 swallowed by the bootloader, then counting up
    assert dev.lines_in[1].startswith(b"3 MEASURE 200 *")


def test_ids_wrap_and_skip_zero():
    probe, dev = connect(FakeDevice(boot_s=0.0))
    probe._next_id = 65534
    probe.ping()
    probe.ping()
    probe.ping()
    assert [int(ln.split(b" ")[0]) for ln in dev.lines_in[-3:]] == [65534, 65535, 1]


def test_synthesised_measure_matches_firmware_formulas():
    probe, dev = connect(FakeDevice(boot_s=0.0))
    m = probe.measure(100)
    assert m.n == 240
    # a 70-count sine has an rms near 70/sqrt(2)
    assert m.analog[1].rms == pytest.approx(70 / 2 ** 0.5, rel=0.03)
    assert m.led_lit == (0, 60, 0)


def test_garbage_before_reply_is_skipped():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("PING", "garbage"))
    probe.ping()
    assert probe.stats["garbage_lines"] >= 1
    assert probe.stats["retries"] == 0


def test_bad_crc_reply_is_dropped_and_retried_at_once():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("MEASURE", "badcrc"))
    m = probe.measure(10)
    assert m.n == 24
    assert probe.stats["crc_errors"] == 1 and probe.stats["retries"] == 1
    assert probe.stats["timeouts"] == 0
    assert verbs(dev).count("MEASURE") == 2


def test_stray_id_is_ignored():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("PING", "stray"))
    probe.ping()
    assert probe.stats["stray_lines"] == 1 and probe.stats["retries"] == 0


def test_late_reply_times_out_retries_and_is_discarded_later():
    dev = FakeDevice(boot_s=0.0, late_s=0.3).script("PING", "late")
    probe, dev = connect(dev)
    probe.ping()                        # first try times out, the retry is answered
    assert probe.stats["timeouts"] == 1 and probe.stats["retries"] == 1
    time.sleep(0.35)                    # the late reply to the first try arrives now
    probe.ping()
    assert probe.stats["stray_lines"] == 1


def test_own_echo_is_not_a_reply():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("PING", "echo"))
    probe.ping()
    assert probe.stats["echoes"] == 1 and probe.stats["retries"] == 0


def test_silence_gives_timeout_after_bounded_retries():
    dev = FakeDevice(boot_s=0.0).script("MEASURE", "silent", "silent", "silent", "silent")
    probe, dev = connect(dev, retries=2)
    t0 = time.monotonic()
    with pytest.raises(DeviceTimeout) as ei:
        probe.measure(50)
    took = time.monotonic() - t0
    msg = str(ei.value)
    assert "fake0" in msg and "'MEASURE 50'" in msg and "3 tries" in msg
    assert "\n" not in msg
    assert took >= 3 * (T + 0.05)       # each try waited its time-out (the window + T) ...
    assert verbs(dev).count("MEASURE") == 3      # ... and there were exactly 3
    assert probe.stats["timeouts"] == 3 and probe.stats["retries"] == 2


def test_reset_mid_session_rehandshakes_and_retries():
    dev = FakeDevice(boot_s=0.1).script("MEASURE", "reset")
    probe, dev = connect(dev)
    m = probe.measure(20)
    assert m.n == 48
    assert probe.stats["resets"] == 1
    assert verbs(dev) == ["HELLO", "MEASURE", "HELLO", "MEASURE"]   # lost, re-HELLO, again
    assert dev.boots == 2


def test_board_that_keeps_resetting_raises_device_reset():
    dev = FakeDevice(boot_s=0.02).script("PING", *["reset"] * (MAX_RESETS_PER_COMMAND + 1))
    probe, dev = connect(dev)
    with pytest.raises(DeviceReset, match=r"reset 4 times during 'PING'"):
        probe.ping()


def test_overlong_line_is_dropped_with_bounded_buffer():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("PING", "longline"))
    probe.ping()
    assert probe.stats["long_lines"] == 1
    assert len(probe._buf) <= MAX_LINE


def test_split_reply_is_reassembled():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("MEASURE", "split"))
    assert probe.measure(10).n == 24
    assert probe.stats["retries"] == 0


def test_half_line_before_timeout_does_not_eat_the_retry_reply():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("PING", "half"))
    probe.ping()
    assert probe.stats["timeouts"] == 1 and probe.stats["retries"] == 1


def test_device_error_reply_is_a_protocol_error():
    # the same ERR three times on a clean line is the probe's answer, not noise
    probe, dev = connect(FakeDevice(boot_s=0.0).script("MEASURE", "err:5", "err:5", "err:5"))
    with pytest.raises(ProtocolError, match=r"rejected 'MEASURE 10': ERR 5 bad-argument"):
        probe.measure(10)
    assert verbs(dev).count("MEASURE") == 3


def test_an_err_that_does_not_repeat_is_line_noise():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("MEASURE", "err:5", "err:1", "err:2"))
    assert probe.measure(10).n == 24
    assert probe.stats["retries"] == 3


def test_busy_and_bad_crc_errors_are_retried():
    probe, dev = connect(FakeDevice(boot_s=0.0).script("PING", "err:7", "err:4"))
    probe.ping()
    assert probe.stats["retries"] == 2


def test_persistent_transient_error_gives_up():
    dev = FakeDevice(boot_s=0.0).script("PING", "err:7", "err:7", "err:7")
    probe, dev = connect(dev, retries=2)
    with pytest.raises(ProtocolError, match="kept answering 'PING' with ERR 7 busy after 3"):
        probe.ping()


def test_bad_measure_window_is_refused_locally():
    probe, dev = connect(FakeDevice(boot_s=0.0))
    with pytest.raises(DeviceError, match="1..5000 ms"):
        probe.measure(0)


def test_bootloader_bytes_before_banner_are_resynchronised():
    probe, dev = connect(FakeDevice(boot_s=0.0))
    reply = probe._parse(b"\x14\x10" + with_crc("! BOOT fw=x/1 proto=1").rstrip(b"\n"))
    assert reply is not None and reply.verb == "BOOT"
    assert probe._parse(b"\x14\x10 garbage") is None


def test_disconnect_becomes_device_error():
    probe, dev = connect(FakeDevice(boot_s=0.0))
    probe.serial.close()              # FakeSerial.write then raises OSError
    with pytest.raises(DeviceError, match="lost the connection to fake0"):
        probe.ping()


def test_banner_glued_to_a_cut_off_reply_is_seen():
    probe, dev = connect(FakeDevice(boot_s=0.0))
    line = b"7 OK MEASURE ms=100 n" + with_crc("! BOOT fw=x/1 proto=1").rstrip(b"\n")
    reply = probe._parse(line)
    assert reply is not None and reply.is_async and reply.verb == "BOOT"


@pytest.mark.parametrize("code,text,want", [
    (13, "Permission denied", "permission denied opening /dev/ttyACM0: add yourself to the "
                              "'dialout' group"),
    (16, "Device or resource busy", "port busy: /dev/ttyACM0 is busy: another program has it"),
    (2, "No such file or directory", "no such port /dev/ttyACM0 (see `hostctl devices`)"),
])
def test_open_errors_say_what_to_do(code, text, want):
    import serial

    from hostctl.device import _open_error

    exc = serial.SerialException(code, f"could not open port /dev/ttyACM0: [Errno {code}] "
                                       f"{text}: '/dev/ttyACM0'")
    err = _open_error("/dev/ttyACM0", exc)
    assert isinstance(err, DeviceError) and str(err).startswith(want)


def test_refused_socket_url_is_one_clear_line():
    with pytest.raises(DeviceError, match=r"^cannot open socket://127.0.0.1:1: .*refused"):
        open_probe("socket://127.0.0.1:1")


def test_endless_noise_without_newlines_is_not_a_probe_and_memory_stays_bounded(monkeypatch):
    seen: list[int] = []
    orig_close = Probe.close

    def close(self):                  # the failed handshake closes the probe: look inside
        seen.append(len(self._buf))
        orig_close(self)

    monkeypatch.setattr(Probe, "close", close)
    dev = FakeDevice(mode="noise", boot_s=0.0)
    with pytest.raises(DeviceError, match="answers but is not a hostctl probe") as ei:
        connect(dev, boot_timeout_s=0.6)
    assert not isinstance(ei.value, DeviceTimeout)
    assert seen and seen[0] <= MAX_LINE + 4096
