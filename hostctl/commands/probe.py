"""`hostctl probe`: handshake with a probe and print one measurement (bench self-test).

The quickest answer to "is the wiring and firmware alright?": identity, link health and
one MEASURE window in counts *and* volts, so a wrong reference voltage or a dead channel
is visible before a long calibration run.
"""

from __future__ import annotations

import json
from typing import Any

import click

CHANNEL_NAMES = ("A0 reference", "A1 low", "A2 band", "A3 high")
LED_NAMES = (("D2", "low"), ("D3", "band"), ("D4", "high"))


def _volts_per_count(info: dict[str, str], port: str) -> tuple[float, int, int]:
    """(V per count, adc_bits, vref_mv) from the HELLO fields."""
    from hostctl.errors import ProtocolError

    try:
        bits = int(info.get("adc_bits", "10"))
        vref = int(info.get("vref_mv", "5000"))
    except ValueError:
        raise ProtocolError(f"probe on {port} sent a bad adc_bits/vref_mv in its HELLO reply: "
                            f"adc_bits={info.get('adc_bits')} vref_mv={info.get('vref_mv')}"
                            ) from None
    if not 1 <= bits <= 24 or vref <= 0:
        raise ProtocolError(f"probe on {port} reports adc_bits={bits} vref_mv={vref}")
    return vref / 1000.0 / 2 ** bits, bits, vref


def measure_report(port: str, ms: int, *, timeout_s: float, boot_timeout_s: float,
                   sim_tone: float | None = None, level_dbfs: float = -6.0) -> dict[str, Any]:
    """Open, handshake, ping, measure once; everything as a JSON-able dict."""
    from hostctl.device import open_probe
    from hostctl.errors import InputError

    if not 1 <= ms <= 5000:
        raise InputError(f"--ms {ms}: a measurement window is 1..5000 ms")
    with open_probe(port, timeout_s=timeout_s, boot_timeout_s=boot_timeout_s) as probe:
        handshake_s = probe.handshake_s
        if sim_tone is not None:
            from hostctl.bench import bench_for

            output = bench_for(probe).tone_output()
            if output is None:
                raise InputError("--sim-tone only works with a sim:// port (the virtual bench)")
            output.tone(sim_tone, level_dbfs)
        ping_s = probe.ping()
        m = probe.measure(ms)
        vpc, bits, vref = _volts_per_count(probe.info, port)
        channels = [{"channel": CHANNEL_NAMES[i] if i < 4 else f"A{i}", "mean": c.mean,
                     "rms": c.rms, "mean_v": c.mean * vpc, "rms_v": c.rms * vpc,
                     "min": c.min, "max": c.max} for i, c in enumerate(m.analog)]
        leds = [{"pin": pin, "channel": ch, "lit": lit, "fraction": frac}
                for (pin, ch), lit, frac in zip(LED_NAMES, m.led_lit, m.led_fraction,
                                                strict=True)]
        return {"port": port, "info": dict(probe.info), "boot_banner": probe.boot_banner,
                "handshake_s": handshake_s, "ping_s": ping_s, "adc_bits": bits,
                "vref_mv": vref, "volts_per_count": vpc,
                "measure": {"ms_requested": ms, "ms": m.ms, "n": m.n, "rate_hz": m.rate_hz,
                            "channels": channels, "leds": leds},
                "stats": dict(probe.stats)}


def format_report(r: dict[str, Any]) -> str:
    """The human table (numbers in counts and volts, LED lit fractions)."""
    info, m = r["info"], r["measure"]
    try:
        mhz = f" @ {int(info.get('f_cpu', '0')) / 1e6:g} MHz" if info.get("f_cpu") else ""
    except ValueError:
        mhz = ""
    lines = [
        f"probe on {r['port']}: {info.get('fw', '?')}, protocol {info.get('proto', '?')}, "
        f"board {info.get('board', '?')} ({info.get('mcu', '?')}{mhz})",
        f"ADC {r['adc_bits']} bit, vref {r['vref_mv']} mV ({r['volts_per_count'] * 1e3:.4f} "
        f"mV/count); handshake {r['handshake_s']:.2f} s, ping {r['ping_s'] * 1e3:.1f} ms",
        f"MEASURE {m['ms_requested']} ms: {m['n']} rounds in {m['ms']} ms, "
        f"{m['rate_hz']} Hz per channel",
        "",
        f"{'channel':<13} {'mean':>9} {'mean V':>8} {'AC rms':>8} {'rms V':>8} "
        f"{'min':>5} {'max':>5}  LED lit",
    ]
    for i, c in enumerate(m["channels"]):
        led = ""
        if 1 <= i <= len(m["leds"]):
            d = m["leds"][i - 1]
            led = f"{d['pin']} {d['fraction'] * 100:5.1f}% ({d['lit']}/{m['n']})"
        lines.append(f"{c['channel']:<13} {c['mean']:9.3f} {c['mean_v']:8.4f} {c['rms']:8.3f} "
                     f"{c['rms_v']:8.4f} {c['min']:5d} {c['max']:5d}  {led}".rstrip())
    s = r["stats"]
    lines += ["", f"link: {s['retries']} retries, {s['crc_errors']} bad CRC, "
                  f"{s['garbage_lines'] + s['long_lines']} garbage, {s['stray_lines']} stray, "
                  f"{s['resets']} resets"]
    return "\n".join(lines)


@click.command("probe")
@click.option("--port", required=True,
              help="Serial port or pyserial URL: /dev/ttyACM0, COM3, socket://host:port, "
                   "sim://?board=notebook (see `hostctl devices`).")
@click.option("--ms", type=int, default=200, show_default=True,
              help="Measurement window in milliseconds (1..5000).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option("--timeout", "timeout_s", type=float, default=1.0, show_default=True,
              help="Seconds to wait for each reply (plus the window for MEASURE).")
@click.option("--boot-timeout", "boot_timeout_s", type=float, default=4.0, show_default=True,
              help="Seconds to wait for the board to boot and answer HELLO.")
@click.option("--sim-tone", type=float, default=None,
              help="sim:// ports only: the virtual bench plays this tone (Hz) first.")
@click.option("--level", "level_dbfs", type=float, default=-6.0, show_default=True,
              help="With --sim-tone: the tone level in dBFS.")
def command(port: str, ms: int, as_json: bool, timeout_s: float, boot_timeout_s: float,
            sim_tone: float | None, level_dbfs: float) -> None:
    """Handshake with the probe on PORT and print its identity and one measurement.

    Exit 0 when the probe answered; one line and a non-zero exit otherwise.
    """
    r = measure_report(port, ms, timeout_s=timeout_s, boot_timeout_s=boot_timeout_s,
                       sim_tone=sim_tone, level_dbfs=level_dbfs)
    click.echo(json.dumps(r, indent=2) if as_json else format_report(r))
