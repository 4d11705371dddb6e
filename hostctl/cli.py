"""The `hostctl` command line: a click group whose commands load only when run.

Each command lives in ``hostctl/commands/<name>.py`` as a click command named ``command``;
the table below gives the one-line help so ``hostctl --help`` never imports torch.
Every :class:`~hostctl.errors.HostctlError` becomes one line on stderr and its exit code.
"""

from __future__ import annotations

import importlib
import sys

import click

from hostctl import __version__
from hostctl.errors import HostctlError

COMMANDS: dict[str, str] = {
    "calibrate": "Run a bench calibration: tones out, measurements in, fit, recommend, report.",
    "fit": "Fit component values to a measurement CSV or session file.",
    "design": "Standard resistors that meet a target before anything is built.",
    "devices": "List serial ports (marking hostctl probes) and audio output devices.",
    "probe": "Handshake with a probe and print one measurement (bench self-test).",
    "check": "Wiring check: plays tones, judges each pin and LED PASS/FAIL with the fix.",
    "tone": "Play one test tone (wiring checks, scripts).",
    "report": "Re-render a run's table, report.json and bode.png from its session.",
    "compare": "Two runs side by side: values, intervals, parts, verdicts.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        mod = importlib.import_module(f"hostctl.commands.{cmd_name.replace('-', '_')}")
        return mod.command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        with formatter.section("Commands"):
            formatter.write_dl([(n, COMMANDS[n]) for n in sorted(COMMANDS)])


EXIT_CODES = """\b
Exit codes:
  0    done; the target check passed
  1    the target check failed, or the data contradict the fit (NOT TRUSTED)
  2    bad input (a file, an option, a session): one line says what and where
  3    the probe: not found, no answer, broken link
  4    the sound card cannot play what was asked
  130  interrupted (Ctrl-C); a calibration's session is kept for --resume
"""


@click.group(cls=LazyGroup, epilog=EXIT_CODES,
             context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="hostctl")
@click.option("-v", "--verbose", is_flag=True,
              help="Trace every serial line to and from the probe on stderr.")
@click.option("-q", "--quiet", is_flag=True,
              help="No progress or notes on stderr: results and errors only.")
@click.pass_context
def cli(ctx: click.Context, verbose: bool, quiet: bool) -> None:
    """hostctl: tune the color organ's RC filters from bench measurements.

    \b
    hostctl calibrate --sim          a whole calibration against the virtual bench
    hostctl fit DATA.csv --circuit color-organ
    hostctl design --series E24
    """
    from hostctl.commands.ui import set_trace

    ctx.obj = {"verbose": verbose, "quiet": quiet}
    _invoked[:] = [ctx.invoked_subcommand] if ctx.invoked_subcommand else []
    from hostctl.commands import USES_BACKENDS, use_backends

    if ctx.invoked_subcommand in USES_BACKENDS and not ctx.resilient_parsing:
        use_backends()
    set_trace(verbose)
    from hostctl.profile import PARAMS

    if ctx.invoked_subcommand in PARAMS:   # bench defaults: user file, ./hostctl.toml, env
        from hostctl.profile import load

        ctx.default_map = load().default_map()


#: the library's setting -> the parameter names commands give it (the first one present wins)
SETTING_PARAMS: dict[str, tuple[str, ...]] = {
    "sample_rate": ("audio_rate", "sample_rate"),
    "device": ("audio_device",),
    "channel": ("audio_channel",),
    "level_dbfs": ("level_dbfs",),
    "level_cap_dbfs": ("level_cap", "level_cap_dbfs"),
    "resume": ("resume_dir",),
    "out": ("out_dir",),
    "circuit": ("circuit_name",),
    "target": ("target_file",),
    "prior": ("priors",),
}
_invoked: list[str] = []        # the subcommand running (its flags word library errors)


def _flags(settings: dict[str, str]) -> dict[str, str]:
    """The running command's flag for each library setting an error names."""
    cmd = cli.get_command(click.Context(cli), _invoked[-1]) if _invoked else None
    if cmd is None or not settings:
        return {}
    by_name = {p.name: p for p in cmd.params if isinstance(p, click.Option)}
    out = {}
    for setting in settings:
        for name in SETTING_PARAMS.get(setting, (setting,)):
            if name in by_name:
                out[setting] = max(by_name[name].opts, key=len)
                break
    return out


def main(argv: list[str] | None = None) -> None:
    """Entry point: run click in standalone=False so errors become one clear line."""
    from hostctl.commands import ARGV

    ARGV[:] = list(sys.argv[1:] if argv is None else argv)
    try:
        rv = cli.main(args=argv, prog_name="hostctl", standalone_mode=False)
    except HostctlError as e:
        click.echo(f"hostctl: error: {e.worded(_flags(e.settings))}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("hostctl: aborted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("hostctl: interrupted", err=True)
        sys.exit(130)
    except click.UsageError as e:
        cmd = e.ctx.command_path if e.ctx else "hostctl"
        click.echo(f"{cmd}: error: {e.format_message()} (see --help)", err=True)
        sys.exit(2)
    except click.ClickException as e:
        click.echo(f"hostctl: error: {e.format_message()}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    sys.exit(rv if isinstance(rv, int) else 0)


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """Run hostctl in-process: (exit code, stderr, stdout). Used by tests and the soak;
    any exception that is not a HostctlError propagates, i.e. counts as a crash."""
    import contextlib
    import io

    err, out = io.StringIO(), io.StringIO()
    code = 0
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            main(argv)
        except SystemExit as e:
            code = int(e.code or 0) if not isinstance(e.code, str) else 2
    return code, err.getvalue(), out.getvalue()


if __name__ == "__main__":
    main()
