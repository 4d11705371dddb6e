"""`hostctl compare A B`: two runs side by side (values, intervals, parts, verdicts).

Both runs are rebuilt from their sessions (hostctl report's path), so the comparison is of
like with like even when the runs were made by different hostctl versions.
"""

from __future__ import annotations

import math

import click


def _cells(res) -> dict[str, str]:
    """label -> text for one run."""
    from hostctl.advice import precision
    from hostctl.recommend import format_ohm

    adv, fit = res.advice, res.fit
    prec = precision(fit)
    out = {"circuit": fit.circuit, "mode, tones": f"{res.config.mode}, {res.tones}",
           "capacitors": "inferred" if adv.capacitance_inferred else "nominal",
           "parts for": "LED switches" if adv.chosen_for.startswith("led") else "corners"}
    for r, v in fit.values.items():
        unc = f"±{100 * prec[r]:.2f}%" if math.isfinite(prec[r]) else "open"
        val = (f"{adv.capacitance[r] * 1e6:#.4g}uF" if adv.capacitance_inferred
               else format_ohm(v))
        out[f"{r}"] = f"{val} {unc}, {fit.corner_hz[r]:.1f} Hz"
        part = None if adv.withheld or r in adv.held else adv.design.parts.get(r)
        out[f"{r} buy"] = "-" if part is None else (
            f"{format_ohm(part.value_ohm)}{'' if part.measured else '?'} "
            f"-> {part.corner_hz:.1f} Hz")
    for ch, bands in ({} if adv.withheld else adv.led_map).items():
        shown = ", ".join(f"{a:.0f}-{b:.0f}" for a, b in bands) or "never lit"
        c = adv.bands.get(ch, {})
        verdict = c.get("pass")
        out[f"LED {ch}"] = shown + ("" if verdict is None else (
            " PASS" if verdict else " UNSURE" if c.get("unsure") else " FAIL"))
    out["trusted"] = "yes" if fit.trusted else "NOT TRUSTED"
    out["target"] = adv.verdict if adv is not None else ("PASS" if res.passed else "FAIL")
    return out


@click.command("compare")
@click.argument("run_a")
@click.argument("run_b")
def command(run_a: str, run_b: str) -> None:
    """Two runs side by side: fitted values with intervals, parts, LED bands, verdicts.

    \b
    hostctl compare hostctl-runs/20261128-101500 hostctl-runs/20261129-093000
    """
    from hostctl.commands.report import load_run
    from hostctl.report import width

    a, b = _cells(load_run(run_a)), _cells(load_run(run_b))
    label_w = max(len(k) for k in [*a, *b]) + 1
    col = max(12, (width() - label_w - 4) // 2)

    def cut(t: str) -> str:
        return t if len(t) <= col else t[:col - 1] + "~"

    click.echo(f"{'':<{label_w}}  {cut('A: ' + run_a):<{col}}  {cut('B: ' + run_b)}".rstrip())
    for k in dict.fromkeys([*a, *b]):
        va, vb = a.get(k, ""), b.get(k, "")
        mark = " " if va == vb else "*"
        click.echo(f"{k:<{label_w}}{mark} {cut(va):<{col}}  {cut(vb)}".rstrip())
    click.echo("*: the runs differ")
