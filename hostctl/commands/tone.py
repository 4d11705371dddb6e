"""`hostctl tone`: play one test tone (wiring checks, scripts)."""

from __future__ import annotations

import sys
import time

import click

from hostctl.audio import CHANNELS, DEFAULT_LEVEL_CAP_DBFS, FADE_S


@click.command("tone")
@click.argument("freq", type=float)
@click.option("--level", "level_dbfs", type=float, default=-12.0, show_default=True,
              help="Level in dBFS (0 dBFS = a full-scale sine's peak).")
@click.option("--duration", "duration_s", type=float, default=None,
              help="Seconds to play (fades included). Default: until Ctrl-C.")
@click.option("--audio-device", default=None,
              help="Output device: name substring or index (see `hostctl devices`), "
                   "or sim:/path/to.sock for a virtual bench. Default: the system default.")
@click.option("--audio-channel", type=click.Choice(list(CHANNELS)), default="both",
              show_default=True, help="Which output channel carries the tone.")
@click.option("--level-cap", "level_cap_dbfs", type=float, default=DEFAULT_LEVEL_CAP_DBFS,
              show_default=True, help="Refuse levels above this (dBFS, at most 0).")
@click.option("--sample-rate", type=int, default=None,
              help="Output sample rate in Hz. Default: the device's default rate.")
def command(freq: float, level_dbfs: float, duration_s: float | None, audio_device: str | None,
            audio_channel: str, level_cap_dbfs: float, sample_rate: int | None) -> None:
    """Play one tone FREQ (Hz) through the sound card, with fades, then stop.

    The level cap is enforced: a level above it is refused, never clamped. Exit code 4
    with one line when the sound card cannot play it.
    """
    from hostctl.audio import check_cap, check_tone, open_output
    from hostctl.errors import InputError

    if duration_s is not None and not (0 < duration_s < 1e6):
        raise InputError(f"--duration {duration_s:g} s must be a positive number of seconds")
    # Refuse a bad tone before touching the device (rate known only after opening it).
    check_cap(level_cap_dbfs)
    check_tone(freq, level_dbfs, sample_rate=sample_rate, level_cap_dbfs=level_cap_dbfs)
    out = open_output(audio_device, channel=audio_channel, level_cap_dbfs=level_cap_dbfs,
                      settle_s=0.0, sample_rate=sample_rate)
    try:
        out.tone(freq, level_dbfs)
        where = getattr(out, "device_name", audio_device or "default")
        click.echo(f"playing {freq:g} Hz at {level_dbfs:g} dBFS on '{where}' "
                   f"({audio_channel}, {out.sample_rate} Hz)"
                   + ("" if duration_s is not None else "; Ctrl-C to stop"), err=True)
        try:
            if duration_s is None:
                while True:
                    time.sleep(0.2)
            else:
                # sample-exact: fade-in + hold + fade-out = the duration asked
                out.silence(after_s=max(0.0, duration_s - 2 * FADE_S))
        except KeyboardInterrupt:
            pass
        out.silence()
    finally:
        out.close()
    sys.stderr.flush()
