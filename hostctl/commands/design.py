"""`hostctl design`: standard resistors for a target before anything is built."""

from __future__ import annotations

import json

import click

from hostctl.circuits import CIRCUITS, get_circuit
from hostctl.commands.options import capacitance_option, parse_capacitance, series_option
from hostctl.recommend import design, format_ohm
from hostctl.target import load_target


@click.command("design")
@click.option("--target", "target_file", type=str, default=None,
              help="Target TOML (corners / LED bands). Default: the notebook's color organ.")
@click.option("--circuit", "circuit_name", default="color-organ", show_default=True,
              help=f"Circuit preset ({', '.join(CIRCUITS)}).")
@capacitance_option
@series_option
@click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout.")
def command(target_file: str | None, circuit_name: str, capacitance: str, series: str,
            as_json: bool) -> None:
    """Standard resistors that meet a target with the given capacitors."""
    circ = get_circuit(circuit_name)
    caps = parse_capacitance(capacitance)
    tgt = load_target(target_file)
    d = design(circ, tgt, caps, series)
    if as_json:
        out = d.to_json()
        out["target"] = tgt.to_json()
        click.echo(json.dumps(out, indent=2))
        return
    click.echo(f"target: {tgt.source}; circuit {circ.name}; series {d.series}")
    click.echo(f"{'component':<12} {'ideal':>10} {'part':>8} {'corner':>11} {'error':>7}  pair")
    for r, p in d.parts.items():
        pair = ""
        if p.pair is not None:
            pair = f"{p.pair.text} = {format_ohm(p.pair.value_ohm)} -> {p.pair_corner_hz:.1f} Hz"
        click.echo(f"{r:<12} {p.ideal_ohm:>10.2f} {format_ohm(p.value_ohm):>8} "
                   f"{p.corner_hz:>8.1f} Hz {100 * p.corner_error:>+6.2f}%  {pair}")
