"""`hostctl devices`: which serial port is the probe, and which sound card plays the tones.

Ports are listed by pyserial with their USB identity. Only ports whose identity is a board
the probe firmware runs on (an Arduino Uno/Nano, or a clone's CH340 / FTDI / CP210x
bridge) get a short handshake (concurrently, so ten ports do not take ten boot times);
opening a port resets any Arduino-based instrument on it, and a port that is not a probe
costs the whole boot timeout. ``--all`` handshakes every port, ``--no-probe`` none.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import click

#: (VID, PID) -> what it is: the USB identities a hostctl probe can have
KNOWN_USB: dict[tuple[int, int], str] = {
    (0x2341, 0x0043): "Arduino Uno", (0x2341, 0x0001): "Arduino Uno (early)",
    (0x2341, 0x0243): "Arduino Uno (Genuino)", (0x2341, 0x0058): "Arduino Nano Every",
    (0x2341, 0x0069): "Arduino Uno R4", (0x2341, 0x1002): "Arduino Uno R4 WiFi",
    (0x2A03, 0x0043): "Arduino Uno (arduino.org)",
    (0x1A86, 0x7523): "CH340 (Uno/Nano clone)", (0x1A86, 0x5523): "CH341 (clone)",
    (0x0403, 0x6001): "FTDI FT232R (Nano, Duemilanove)",
    (0x10C4, 0xEA60): "CP210x (clone)",
}


def usb_identity(port: dict[str, Any]) -> str | None:
    """What a known board the port is, or None."""
    if port.get("vid") is None or port.get("pid") is None:
        return None
    return KNOWN_USB.get((int(port["vid"]), int(port["pid"])))


def list_serial_ports() -> list[dict[str, Any]]:
    """pyserial's view of the ports: device, description, hwid, USB ids when known."""
    from serial.tools import list_ports

    out = []
    for p in sorted(list_ports.comports(), key=lambda p: p.device):
        out.append({"device": p.device, "description": p.description or "n/a",
                    "hwid": p.hwid or "n/a",
                    "vid": p.vid, "pid": p.pid, "serial_number": p.serial_number,
                    "manufacturer": p.manufacturer})
    return out


def probe_port(device: str, boot_timeout_s: float) -> dict[str, Any]:
    """Short handshake: {"probe": True, fw, proto} or {"probe": False, "reason": ...}."""
    from hostctl.device import open_probe
    from hostctl.errors import DeviceError, DeviceTimeout

    try:
        with open_probe(device, boot_timeout_s=boot_timeout_s, timeout_s=0.5,
                        retries=0) as p:
            return {"probe": True, "fw": p.info.get("fw", "?"),
                    "proto": p.info.get("proto", "?"), "board": p.info.get("board", "?")}
    except DeviceTimeout:
        return {"probe": False, "reason": f"no answer within {boot_timeout_s:g} s"}
    except DeviceError as e:
        return {"probe": False, "reason": str(e)}
    except Exception as e:  # noqa: BLE001 - one odd port must not spoil the listing
        return {"probe": False, "reason": f"{type(e).__name__}: {e}"}


def audio_devices() -> tuple[list[dict[str, Any]], str | None]:
    """(devices, reason when there are none) from hostctl.audio, never raising."""
    try:
        from hostctl import audio
    except Exception as e:  # noqa: BLE001 - missing module or broken PortAudio import
        return [], (f"audio support unavailable ({type(e).__name__}: {e}); install "
                    "libportaudio2 and `pip install sounddevice`")
    try:
        if hasattr(audio, "probe_output_devices"):
            devs, reason = audio.probe_output_devices()
        else:
            devs = audio.list_output_devices()
            reason = None if devs else "PortAudio lists no output device"
    except Exception as e:  # noqa: BLE001
        return [], (f"cannot list audio devices ({e}); install libportaudio2 and check "
                    "the sound server")
    return list(devs), reason


@click.command("devices")
@click.option("--no-probe", is_flag=True,
              help="Only list ports; do not open any (opening a Uno resets it).")
@click.option("--all", "all_ports", is_flag=True,
              help="Handshake every port, not only those whose USB identity is a board the "
                   "probe runs on (resets any Arduino-based instrument on the bench).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
@click.option("--boot-timeout", "boot_timeout_s", type=float, default=2.5, show_default=True,
              help="Seconds to wait for each port's handshake.")
@click.option("--port", "extra_ports", multiple=True,
              help="Also check this port or URL (e.g. sim://?board=bench); repeatable.")
def command(no_probe: bool, as_json: bool, boot_timeout_s: float,
            extra_ports: tuple[str, ...], all_ports: bool = False) -> None:
    """List serial ports (marking hostctl probes) and audio output devices.

    Only ports that are a known board by USB identity (Arduino Uno/Nano, CH340, FTDI,
    CP210x) and ports given with --port are opened; --all opens every port.
    """
    ports = list_serial_ports()
    known = {p["device"] for p in ports}
    for p in ports:
        p["usb_identity"] = usb_identity(p)
    for extra in extra_ports:
        if extra not in known:
            ports.append({"device": extra, "description": "given with --port", "hwid": "n/a",
                          "vid": None, "pid": None, "serial_number": None,
                          "manufacturer": None, "usb_identity": None})
    asked = set(extra_ports)
    todo = [] if no_probe else [p for p in ports if all_ports or p["usb_identity"]
                                or p["device"] in asked]
    if todo:
        with ThreadPoolExecutor(max_workers=min(8, len(todo))) as pool:
            results = list(pool.map(lambda p: probe_port(p["device"], boot_timeout_s), todo))
        for p, r in zip(todo, results, strict=True):
            p["handshake"] = r
    for p in ports:
        if "handshake" not in p and not no_probe:
            p["handshake"] = None   # not opened: not a known board (see --all)
    audio, audio_reason = audio_devices()

    if as_json:
        click.echo(json.dumps({"serial_ports": ports, "audio_outputs": audio,
                               "audio_problem": audio_reason}, indent=2))
        return
    click.echo("Serial ports:")
    if not ports:
        click.echo("  (none found: is the probe plugged in? on Linux check `dmesg | tail` "
                   "for ttyACM/ttyUSB)")
    for p in ports:
        line = f"  {p['device']:<16} {p['description']}"
        if p["hwid"] != "n/a":
            line += f"  [{p['hwid']}]"
        if p.get("usb_identity"):
            line += f"  {p['usb_identity']}"
        hs = p.get("handshake")
        if hs is None and not no_probe:
            line += "  -> not opened (not a known board; --all to try it)"
        elif hs is not None:
            if hs["probe"]:
                line += f"  -> hostctl probe, firmware {hs['fw']} (protocol {hs['proto']})"
            else:
                line += f"  -> not a probe: {hs['reason']}"
        click.echo(line)
    click.echo("Audio output devices:")
    if not audio:
        click.echo(f"  (none: {audio_reason})")
    for d in audio:
        mark = "  (default)" if d.get("default") else ""
        api = f" [{d['hostapi']}]" if d.get("hostapi") else ""
        click.echo(f"  [{d.get('index', '?')}] {d.get('name', '?')}{api}, "
                   f"{d.get('max_output_channels', '?')} ch, "
                   f"{float(d.get('default_samplerate', 0)):g} Hz{mark}")
