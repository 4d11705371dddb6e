"""`hostctl check`: a wiring check with verdicts (it plays the tones itself)."""

from __future__ import annotations

import json

import click

from hostctl.errors import InputError


@click.command("check")
@click.option("--port", help="Serial port or URL of the probe (see `hostctl devices`).")
@click.option("--sim", "sim_board", is_flag=False, flag_value="notebook", default=None,
              help="Check the virtual bench (board name or TOML; default: notebook).")
@click.option("--seed", default=0, show_default=True, help="Virtual bench board draw.")
@click.option("--faults", default=None,
              help="Virtual bench only: wiring faults, e.g. dead:A2, noref, bias:A1=0.4, "
                   "swap:A1-A3 (sims/wiring.py).")
@click.option("--audio-device", default=None, help="Output device name or index.")
@click.option("--audio-rate", type=click.IntRange(8000, 384000), default=None,
              help="Output sample rate, Hz.")
@click.option("--settle", "settle_s", type=click.FloatRange(0, 10), default=0.02,
              show_default=True, help="Seconds after a tone starts before measuring.")
@click.option("--level", "level_dbfs", type=click.FloatRange(-60, 0), default=-6.0,
              show_default=True, help="Tone level in dBFS.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def command(port: str | None, sim_board: str | None, seed: int, faults: str | None,
            audio_device: str | None, audio_rate: int | None, settle_s: float,
            level_dbfs: float, as_json: bool) -> None:
    """Check the wiring: bias on every pin, the reference, each channel and LED.

    Plays silence, 1 kHz and one tone in each channel's passband and judges each item
    PASS or FAIL, with the likely cause and fix. Exit 1 if anything fails.

    \b
    hostctl check --port /dev/ttyACM0
    hostctl check --sim bench --faults swap:A1-A3
    """
    from hostctl.check import format_items, run_check
    from hostctl.commands.calibrate import given
    from hostctl.device import open_probe
    from hostctl.report import width

    if sim_board:
        port = port if given("port") else None
        audio_device = audio_device if given("audio_device") else None
        if port:
            raise InputError("give either --port or --sim, not both")
        port = f"sim://?board={sim_board}&seed={seed}" + (f"&faults={faults}" if faults else "")
    elif faults:
        raise InputError("--faults only works with --sim (the virtual bench)")
    if not port:
        raise InputError("no probe: give --port PORT (see `hostctl devices`) or --sim")
    from hostctl.audio import open_output
    from hostctl.bench import bench_for

    with open_probe(port) as probe:
        bench = bench_for(probe)
        output = ((bench.tone_output() if audio_device is None else None)
                  or open_output(audio_device, sample_rate=audio_rate, settle_s=settle_s))
        board = bench.defaults()
        try:
            channels = tuple(c for c in ("low", "band", "high")
                             if board is None or c in board.channels)
            items = run_check(probe, output, channels, level_dbfs)
        finally:
            output.close()
    ok = all(it.passed for it in items)
    if as_json:
        click.echo(json.dumps({"port": port, "pass": ok,
                               "items": [it.to_json() for it in items]}, indent=2))
    else:
        for line in format_items(items, width()):
            click.echo(line)
        n_fail = sum(not it.passed for it in items)
        click.echo(f"wiring: {'PASS' if ok else f'FAIL ({n_fail} of {len(items)} items)'}")
    if not ok:
        raise SystemExit(1)
