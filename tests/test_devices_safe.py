"""`hostctl devices` opens only ports whose USB identity is a board the probe runs on.

pyserial's ``list_ports.comports()`` is replaced by fake entries (real ListPortInfo objects)
and ``serial.serial_for_url`` records every port hostctl tries to open.
"""

from __future__ import annotations

import json

import pytest
import serial
from serial.tools import list_ports, list_ports_common

from hostctl.cli import invoke

#: device -> (vid, pid) or None for a port without a USB identity
FAKE = {"/dev/ttyACM0": (0x2341, 0x0043),      # Uno
        "/dev/ttyACM1": (0x2341, 0x0001),      # early Uno
        "/dev/ttyUSB0": (0x1A86, 0x7523),      # CH340 Nano clone
        "/dev/ttyUSB1": (0x0403, 0x6001),      # FTDI
        "/dev/ttyUSB2": (0x067B, 0x2303),      # a Prolific cable: some other instrument
        "/dev/ttyACM2": (0x2E8A, 0x000A),      # a Raspberry Pi Pico
        "/dev/ttyS0": None}                    # a built-in UART
PROBES = {"/dev/ttyACM0", "/dev/ttyACM1", "/dev/ttyUSB0", "/dev/ttyUSB1"}


@pytest.fixture
def opened(monkeypatch) -> list[str]:
    def comports(include_links: bool = False):
        out = []
        for dev, ids in FAKE.items():
            p = list_ports_common.ListPortInfo(dev, skip_link_detection=True)
            if ids is not None:
                p.vid, p.pid = ids
                p.description = "USB serial"
            p.hwid = p.usb_info() if ids is not None else "n/a"
            out.append(p)
        return out

    calls: list[str] = []

    def serial_for_url(url, *args, **kwargs):
        calls.append(url)
        raise serial.SerialException(f"could not open port {url}: fake")

    monkeypatch.setattr(list_ports, "comports", comports)
    monkeypatch.setattr(serial, "serial_for_url", serial_for_url)
    return calls


def test_only_known_boards_are_opened(opened: list[str]) -> None:
    code, err, out = invoke(["devices", "--json", "--boot-timeout", "0.2"])
    assert code == 0, err
    assert sorted(opened) == sorted(PROBES)
    d = {p["device"]: p for p in json.loads(out)["serial_ports"]}
    assert set(d) == set(FAKE)
    for dev in FAKE:
        if dev in PROBES:
            assert d[dev]["usb_identity"] and d[dev]["handshake"]["probe"] is False
        else:
            assert d[dev]["usb_identity"] is None and d[dev]["handshake"] is None
    assert "CH340" in d["/dev/ttyUSB0"]["usb_identity"]


def test_text_says_which_were_not_opened(opened: list[str]) -> None:
    code, err, out = invoke(["devices", "--boot-timeout", "0.2"])
    assert code == 0, err
    lines = {ln.split()[0]: ln for ln in out.splitlines() if ln.startswith("  /dev/")}
    assert "not opened" in lines["/dev/ttyUSB2"] and "--all" in lines["/dev/ttyS0"]
    assert "Arduino Uno" in lines["/dev/ttyACM0"] and "not opened" not in lines["/dev/ttyACM0"]


def test_all_opens_every_port_and_no_probe_none(opened: list[str]) -> None:
    code, err, _ = invoke(["devices", "--all", "--boot-timeout", "0.2"])
    assert code == 0, err
    assert sorted(opened) == sorted(FAKE)
    opened.clear()
    code, err, _ = invoke(["devices", "--no-probe"])
    assert code == 0 and opened == []


def test_a_port_asked_for_is_opened(opened: list[str]) -> None:
    code, err, _ = invoke(["devices", "--port", "/dev/ttyS0", "--boot-timeout", "0.2"])
    assert code == 0, err
    assert sorted(opened) == sorted(PROBES | {"/dev/ttyS0"})
