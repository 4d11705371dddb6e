"""`hostctl report DIR`: re-render a run (table, report.json, bode.png) from its session.

The session holds every reading and the run's settings, so the report can be rebuilt by
any hostctl version (e.g. after an upgrade, or when bode.png was skipped), through the
same recommendation path as the run itself.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from hostctl.errors import InputError


def load_run(path: str | Path) -> Any:
    """A run folder (or its session.csv) as a RunResult rebuilt from the session; what
    only the run knew (bench time, problems, probe) comes from its report.json if any."""
    from hostctl.advice import precision
    from hostctl.runresult import RunResult
    from hostctl.sessionfit import advise_session
    from hostctl.sessionlog import SESSION_NAME, is_session, read_session

    p = Path(path)
    run_dir = p.parent if p.name in (SESSION_NAME, "report.json") else p
    session = run_dir / SESSION_NAME
    if not session.exists():
        raise InputError(f"no {SESSION_NAME} here (a hostctl calibrate run folder?)",
                         str(run_dir))
    if not is_session(session):
        raise InputError("not a hostctl session", str(session))
    ms = read_session(session)
    if not ms.rows:
        raise InputError("the session has no measurements yet (resume it first)", str(session))
    old: dict[str, Any] = {}
    try:
        old = json.loads((run_dir / "report.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        pass
    fit, cfg, adv = advise_session(ms)
    run = old.get("run") if isinstance(old.get("run"), dict) else {}
    prec = precision(fit)
    tones = len({(m.frequency_hz, m.level_dbfs) for m in ms.rows})
    probe = old.get("probe") or {k: ms.meta[m] for k, m in (("fw", "firmware"),
                                                             ("proto", "protocol"))
                                 if m in ms.meta}
    res = RunResult(
        fit=fit, design=adv.design, tones=int(run.get("tones", tones)),
        bench_time_s=float(run.get("bench_time_s", 0.0)),
        host_time_s=float(run.get("host_time_s", 0.0)),
        wall_time_s=float(run.get("wall_time_s", 0.0)), precision_reached=prec,
        unmet=[k for k, v in prec.items() if not v <= cfg.precision],
        threshold=adv.threshold, threshold_source=adv.threshold_source,
        actual_capacitance=adv.capacitance, capacitance_source=adv.capacitance_source,
        led_map=adv.led_map, bands=adv.bands, passed=adv.passed,
        problems=list(run.get("problems", adv.problems)), session=str(session), config=cfg,
        probe_info=dict(probe), data=ms, advice=adv)
    res.previous = old   # type: ignore[attr-defined]
    return res


@click.command("report")
@click.argument("run_dir")
@click.option("--json", "as_json", is_flag=True, help="Print report.json on stdout.")
@click.option("--no-plot", is_flag=True, help="Skip bode.png.")
def command(run_dir: str, as_json: bool, no_plot: bool) -> None:
    """Re-render a run's table, report.json and bode.png from its session.

    \b
    hostctl report hostctl-runs/20261128-101500
    """
    from hostctl import report
    from hostctl.commands import ARGV
    from hostctl.commands.ui import say
    from hostctl.provenance import provenance

    res = load_run(run_dir)
    before = res.previous.get("provenance")
    res.provenance = provenance(argv=ARGV or None, probe=res.probe_info,
                                audio_device=(before or {}).get("audio_device"),
                                port=(before or {}).get("port"))
    if before:
        res.provenance["run"] = before      # how the measurements themselves were made
    files, notes = report.write_all(res, Path(res.session).parent, plot=not no_plot)
    if as_json:
        click.echo(json.dumps(res.to_json(), indent=2))
    else:
        click.echo(report.table(res))
        click.echo(report.wrote_line(files[1:]))
    for n in notes:
        say(n)
    if not res.passed:
        raise SystemExit(1)
