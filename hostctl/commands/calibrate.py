"""`hostctl calibrate`: the bench run from the first tone to recommended resistors."""

from __future__ import annotations

import errno
import json
import math
import sys
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import click

from hostctl.circuits import CIRCUITS
from hostctl.commands.options import (
    AsciiNumber,
    bias_option,
    cap_tolerance_option,
    capacitance_option,
    parse_cap_tolerance,
    parse_capacitance,
    parse_per_led,
    parse_values,
    series_option,
    use_bias,
)
from hostctl.commands.ui import Progress, quiet, say
from hostctl.errors import AudioError, DeviceError, HostctlError, InputError, OutputError
from hostctl.files import ascii_float
from hostctl.runconfig import BenchSettings


def parse_precision(text: str) -> float:
    t = text.strip()
    try:
        v = ascii_float(t[:-1]) / 100 if t.endswith("%") else ascii_float(t)
    except ValueError:
        raise InputError(f"--precision: '{text}' is not a percentage like 0.5%") from None
    if not (math.isfinite(v) and 0 < v < 1):
        raise InputError(f"--precision must be between 0% and 100%, got {text}")
    return v


@click.command("calibrate")
@click.option("--port", help="Serial port or URL of the probe (/dev/ttyACM0, sim://?board=...).")
@click.option("--sim", "sim_board", is_flag=False, flag_value="notebook", default=None,
              help="Use the virtual bench (board name or TOML; default: notebook).")
@click.option("--seed", type=AsciiNumber(whole=True, lo=0), default=0, show_default=True,
              help="Virtual bench board draw (a whole number >= 0).")
@click.option("--audio-device", default=None, help="Output device name or index.")
@click.option("--audio-channel", type=click.Choice(["both", "left", "right"]), default="both")
@click.option("--audio-rate", type=AsciiNumber(whole=True, lo=8000, hi=384000), default=None,
              help="Output sample rate, Hz (default: the device's; 48000 plays up to 20 kHz).")
@click.option("--settle", "settle_s", type=AsciiNumber(lo=0, hi=10), default=0.02,
              show_default=True,
              help="Seconds to wait after a tone reaches the output before measuring "
                   "(raise for slow audio paths, e.g. a listening virtual bench).")
@click.option("--mode", type=click.Choice(["gain", "led", "both"]), default="gain",
              show_default=True, help="Fit filter output amplitudes, LED states, or both.")
@click.option("--circuit", "circuit_name", default=None,
              help=f"Circuit preset ({', '.join(CIRCUITS)}); default color-organ or the board's.")
@click.option("--netlist", default=None,
              help="Your circuit as a SPICE netlist (.cir) instead of --circuit.")
@bias_option
@click.option("--target", "target_file", default=None, help="Target TOML (corners, LED bands).")
@click.option("--installed", default="", help="Installed resistors, e.g. R_low=220,R_high=33.")
@capacitance_option
@cap_tolerance_option
@click.option("--precision", default="1%", show_default=True,
              help="Stop when every 95% interval is within this.")
@click.option("--max-tones", type=AsciiNumber(whole=True), default=None,
              help="Tone budget (default 40 gain, 80 led).")
@series_option
@click.option("--level", "level_dbfs", type=AsciiNumber(), default=-6.0, show_default=True,
              help="Tone level in dBFS.")
@click.option("--level-cap", type=AsciiNumber(), default=-6.0, show_default=True,
              help="Never play louder than this (dBFS); protects the circuit and your ears.")
@click.option("--window-ms", type=AsciiNumber(whole=True, lo=10, hi=5000), default=200,
              show_default=True)
@click.option("--led-threshold", default=None,
              help="LED threshold on |H| at --level, one or per LED: low=0.5,band=0.6,high=0.8 "
                   "(default: measured).")
@click.option("--led-vf", default=None,
              help="LED switching voltage (V), one or per LED (LEDs of different colors): "
                   "low=1.8,band=2.0,high=2.9; the threshold follows from the measured "
                   "reference amplitude.")
@click.option("--out", "out_dir", default=None, help="Session folder (default: a new one).")
@click.option("--resume", "resume_dir", default=None, help="Continue the session in DIR.")
@click.option("--force", is_flag=True,
              help="Resume with a probe other than the session's (same circuit, re-plugged).")
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout.")
@click.option("--no-plot", is_flag=True, help="Skip bode.png.")
def command(port, sim_board, seed, audio_device, audio_channel, mode, circuit_name, netlist,
            target_file, installed, capacitance, precision, max_tones, series, level_dbfs,
            level_cap, window_ms,
            led_threshold, led_vf, out_dir, resume_dir, as_json, no_plot, force=False,
            audio_rate=None, settle_s=0.02, bias_ohm=None, cap_tolerance=None) -> None:
    """Calibrate: tones out, measurements in, fit, recommend, report.

    \b
    hostctl calibrate --sim                      the virtual bench, in seconds
    hostctl calibrate --port /dev/ttyACM0 --installed R_low=200,R_band_low=39,...
    hostctl calibrate --resume hostctl-runs/20261128-101500
    hostctl calibrate --port /dev/pts/N --audio-device pulse --audio-rate 48000
        --settle 0.1 --installed ...
        (a `python -m sims.bench serve --listen` bench)
    """
    from hostctl import calibrate, report
    from hostctl.commands.fit import _netlist
    from hostctl.sessionlog import SessionLock

    net_circ = _netlist(netlist, circuit_name)
    if net_circ is not None:
        circuit_name = net_circ.name
    use_bias(bias_ohm, circuit_name)
    if level_dbfs > level_cap:
        raise InputError(f"--level {level_dbfs:g} dBFS is above the level cap {level_cap:g} dBFS "
                         "(raise --level-cap if you mean it)")
    caps = parse_capacitance(capacitance)
    if net_circ is not None and capacitance == "1e-6":   # not given: the netlist's own
        from hostctl.circuits import capacitances

        caps = capacitances(net_circ, {})
    cfg = _config(calibrate, circuit_name, mode, precision, max_tones, series, target_file,
                  installed, caps, level_dbfs, window_ms, led_threshold, led_vf)
    cfg = replace(cfg, cap_tolerance=parse_cap_tolerance(cap_tolerance))
    resume = resume_dir is not None
    segment: dict[str, str] = {}
    created = False
    if sim_board:   # the virtual bench: a profile's port and sound card are not for it
        port = port if given("port") else None
        audio_device = audio_device if given("audio_device") else None
    if resume:
        if out_dir is not None:
            raise InputError("give --out for a new session or --resume DIR, not both")
        out = Path(resume_dir)
        cfg, segment, header = _resume_config(out, cfg, _given())
        cfg.check()
        port, audio_device, audio_rate, settle_s = _resume_bench(
            header, sim_board, port, audio_device, audio_rate, settle_s)
    else:
        from hostctl.session import prepare_out

        out = Path(out_dir or f"hostctl-runs/{datetime.now():%Y%m%d-%H%M%S}")
        if circuit_name or (port and not port.startswith("sim:")):
            cfg.check()             # all of it before the probe is even opened
        created = prepare_out(out)
    port = _probe_port(port, sim_board, seed)
    cfg = replace(cfg, bench=BenchSettings(
        None if audio_device is None else str(audio_device), audio_rate, settle_s))

    from hostctl.device import open_probe
    from hostctl.session import discard_if_empty

    try:
        with SessionLock(out):
            res = _run_guarded(open_probe, port, calibrate, cfg, out, resume, audio_device,
                               audio_channel, circuit_name is not None,
                               capacitance != "1e-6", as_json, level_cap,
                               audio_rate=audio_rate, settle_s=settle_s, segment=segment,
                               force=force)
            _report(report, res, out, as_json, no_plot)
    finally:
        if not resume:
            discard_if_empty(out, created)
    if not res.passed:
        sys.exit(1)


def _config(calibrate, circuit_name, mode, precision, max_tones, series, target_file,
            installed, caps, level_dbfs, window_ms, led_threshold, led_vf):
    """The run's configuration from the options' strings (the board's defaults may still
    fill in the circuit and parts: :func:`hostctl.runconfig.with_board`)."""
    from hostctl.target import load_target

    return calibrate.RunConfig(circuit=circuit_name or "color-organ", mode=mode,
                               precision=parse_precision(precision),
                               max_tones=max_tones, series=series,
                               target=load_target(target_file),
                               installed=parse_values(installed, "--installed"),
                               capacitance=caps,
                               level_dbfs=level_dbfs, window_ms=window_ms,
                               led_threshold=None if led_threshold is None else parse_per_led(
                                   led_threshold, "--led-threshold"),
                               led_vf=None if led_vf is None else parse_per_led(
                                   led_vf, "--led-vf"))


def _probe_port(port: str | None, sim_board: str | None, seed: int) -> str:
    """--port, or the virtual bench's URL for --sim (one of the two)."""
    if port and sim_board:
        raise InputError("give either --port or --sim, not both")
    if not port and not sim_board:
        raise InputError("no probe: give --port PORT (see `hostctl devices`) or --sim")
    return f"sim://?board={sim_board}&seed={seed}" if sim_board else str(port)


def _resume_bench(header, sim_board, port, audio_device, audio_rate, settle_s):
    """(port, audio device, rate, settle) for a resumed run: the session's bench beats the
    profile; the command line beats both (and --sim given now replaces the session's port
    rather than clashing with it)."""
    if not sim_board:
        port = (port if given("port") else None) or header.port or port or None
    bench = header.config.bench
    if bench is not None:
        if not given("audio_device"):
            audio_device = bench.audio_device
        if not given("audio_rate") and bench.audio_rate is not None:
            audio_rate = bench.audio_rate
        if not given("settle_s") and bench.settle_s is not None:
            settle_s = bench.settle_s
    return port, audio_device, audio_rate, settle_s


#: RunConfig field -> click parameter name, for options given on resume.
_PARAMS = {"max_tones": "max_tones", "precision": "precision", "series": "series",
           "window_ms": "window_ms", "circuit": "circuit_name", "mode": "mode",
           "capacitance": "capacitance", "installed": "installed", "level_dbfs": "level_dbfs",
           "led_threshold": "led_threshold", "led_vf": "led_vf", "target": "target_file",
           "cap_tolerance": "cap_tolerance"}


def _given() -> set[str]:
    """The RunConfig fields whose options were typed on the command line (a profile's
    defaults are not 'given': they apply to new sessions only)."""
    return {f for f, p in _PARAMS.items() if given(p)}


def _resume_config(out: Path, given_cfg, given: set[str]):
    """The session's settings, with the options given now applied (new segment) or refused."""
    from hostctl.runconfig import SessionHeader
    from hostctl.session import resume_changes, resume_target
    from hostctl.sessionlog import SESSION_NAME, read_session

    path = out / SESSION_NAME
    header = SessionHeader.from_meta(read_session(path).meta, str(path))
    segment = resume_changes(header.text, header.config, given_cfg, given - {"target"})
    cfg = replace(header.config, **{k: getattr(given_cfg, k) for k in segment})
    if "max_tones" in segment:
        segment["max_tones"] = str(cfg.tone_budget)
    target, target_meta = resume_target(header, given_cfg.target if "target" in given
                                        else None, str(out))
    segment.update(target_meta)
    return replace(cfg, target=target), segment, header


def _run_guarded(open_probe, port, calibrate, cfg, out, resume, *args, **kw):
    """The run; a stop that leaves a session says how to continue it."""
    from hostctl.sessionlog import SESSION_NAME

    try:
        return _run_on_probe(open_probe(port), calibrate, cfg, out, resume, *args, **kw)
    except (DeviceError, AudioError, KeyboardInterrupt) as e:
        if not (out / SESSION_NAME).exists():
            raise
        hint = (f"the session is kept: continue it with `hostctl calibrate --resume {out}`"
                " (add --port PORT if the probe moved)")
        if isinstance(e, KeyboardInterrupt):
            raise Interrupted(f"interrupted; {hint}") from None
        e.args = (f"{e}; {hint}",)
        raise


def _report(report, res, out: Path, as_json: bool, no_plot: bool) -> None:
    """report.json and bode.png (atomically: a full disk leaves the old ones), then print."""
    try:
        files, notes = report.write_all(res, out, plot=not no_plot)
    except OSError as e:
        (out / "bode.tmp.png").unlink(missing_ok=True)
        why = "disk full" if e.errno in (errno.ENOSPC, errno.EDQUOT) else (e.strerror or str(e))
        raise OutputError(f"{why}: cannot write the report in {out}; the session is kept "
                          f"({res.tones} tones): free space and run `hostctl fit "
                          f"{out / 'session.csv'}`") from None
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=2))
    else:
        click.echo(report.table(res))
        click.echo(report.wrote_line(files))
    for n in notes:
        say(n)


def given(param: str) -> bool:
    """Was ``param`` on the command line (not a default, nor the bench profile)?"""
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(param) == ParameterSource.COMMANDLINE


class Interrupted(HostctlError):
    """Ctrl-C during a run: the shell's usual code for SIGINT."""

    exit_code = 130


def _run_on_probe(probe_cm, calibrate, cfg, out, resume, audio_device, audio_channel,
                  circuit_given, capacitance_given, as_json, level_cap=-6.0, *, audio_rate=None,
                  settle_s=0.02, segment=None, force=False):
    """The run itself, with the probe open (split out so errors can name the session)."""
    from hostctl.audio import open_output
    from hostctl.bench import bench_for
    from hostctl.runconfig import with_board

    with probe_cm as probe:
        bench = bench_for(probe)
        output = bench.tone_output() if audio_device is None else None
        own = output is not None
        if own and not resume:   # the bench's own board: its circuit and parts by default
            cfg = with_board(cfg, bench.defaults(), circuit_given=circuit_given,
                             capacitance_given=capacitance_given)
        if not own:
            output = open_output(audio_device, channel=audio_channel, level_cap_dbfs=level_cap,
                                 sample_rate=audio_rate, settle_s=settle_s)
        bar = None if as_json or quiet() else Progress()
        try:
            res = calibrate.run(probe, output, cfg, out, resume=resume, progress=bar,
                                segment=segment, force=force)
            from hostctl.commands import ARGV
            from hostctl.provenance import provenance

            res.provenance = provenance(
                argv=ARGV or None,
                audio_device=getattr(output, "device_name", None) or (
                    bench.name if own else audio_device),
                probe=dict(probe.info), port=str(probe.port))
            return res
        finally:
            if bar is not None:
                bar.finish()
            output.close()
