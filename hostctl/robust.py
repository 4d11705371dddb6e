"""Verdicts that hold for every build the run cannot tell apart, and parts chosen so they do.

A run knows each capacitor only to a tolerance (through the installed resistors', or its
own), the sound card's source resistance to an interval and each LED's switching voltage to
a range. A verdict on the nominal build can flip inside that box, and ngspice, built with
the true parts, then disagrees with it (the 10-board acceptance: 22 such FAILs). So:

1. when the recommended parts' verdict is not the same all over the box, the E-series
   neighbours of each LED's section parts are tried for a choice that meets the target at
   every corner of it (the largest worst-case margin wins);
2. where none does, that LED's verdict is UNSURE (``"unsure": true``; neither a PASS nor a
   claim about the build) with what would decide it.

FAIL stays for builds that miss the bands all over the box. numpy only.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from itertools import product
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from hostctl.advice import Advice
    from hostctl.circuits import Circuit

#: What a run cannot know of each capacitor when not told (``--cap-tolerance``): the
#: installed resistor's tolerance (5 %, E24 parts) when the fit infers it through them,
#: else the capacitor's own (10 %); a capacitor the user named (``C_low=...``) was
#: measured on the bench, to a meter's 1 % (as the fit's prior takes it).
DEFAULT_CAP_TOL = {True: 0.05, False: 0.10}
#: FAIL reasons about what the data left unknown (no build to second-guess there)
UNKNOWN_WHY = ("not determined", "unknown", "never switched", "cannot tell", "NOT TRUSTED")
#: how many E-series steps either way the search tries for each part (nearest first)
STEPS = (1, 2)
#: what would decide a verdict that flips, by what flips it
DECIDE = {"caps": "measure the capacitors (or the installed resistors) and give them "
                  "(the capacitance C_low=..., and their tolerance)",
          "source": "pin the source resistance down (more reference amplitudes; mode both "
                    "measures it with the gains), or drive from a lower-impedance output",
          "vf": "measure the LEDs' switching voltages more closely (given, or more LED "
                "tones near their switches)",
          "all": "or choose a target whose band gaps leave room for what is not known"}


@dataclass(frozen=True)
class Box:
    """What the run cannot tell apart: capacitors within ``cap_tol`` of the assumed ones,
    the source at ``sources``, each LED's switching voltage within ``vf[channel]``."""

    cap_tol: Mapping[str, float]
    sources: tuple[float, ...]
    vf: Mapping[str, tuple[float, float]]
    what: str

    def points(self, caps: Mapping[str, float]) -> Iterator[tuple[dict[str, float], float]]:
        """The nominal capacitors, then every corner, each at every source resistance."""
        signs = [(0.0,) * len(caps), *product((-1.0, 1.0), repeat=len(caps))]
        for ss in signs:
            c = {r: v * (1 + s * self.cap_tol[r]) for (r, v), s in zip(caps.items(), ss,
                                                                       strict=True)}
            for rs in self.sources:
                yield c, rs


def box_for(adv: Advice, vf_ranges: Mapping[str, tuple[float, float]] | None = None,
            cap_tol: float | None = None) -> Box:
    """The box of a recommendation: ``cap_tol`` (None: :data:`DEFAULT_CAP_TOL`), the
    source's 95 % interval ends (an open end is left to advice's own check), and the
    measured switching voltage ranges."""
    from hostctl.fit.settings import MEASURED_C

    drive = adv.drive
    assert drive is not None
    tol = DEFAULT_CAP_TOL[adv.capacitance_inferred] if cap_tol is None else cap_tol
    tols = {r: MEASURED_C if cap_tol is None and not adv.capacitance_inferred
            and r in adv.named_caps else tol for r in adv.capacitance}
    ci = (drive.estimate or {}).get("ci95_ohm") or [drive.r_source, drive.r_source]
    hi = drive.r_source if ci[1] is None else ci[1]
    sources = tuple(sorted({float(drive.r_source), float(ci[0]), float(hi)}))
    if cap_tol is not None:
        what = f"each capacitor within +-{tol:.0%} (the given capacitor tolerance)"
    elif adv.capacitance_inferred:
        what = (f"each capacitor within +-{tol:.0%} (known only through the installed "
                "resistors' tolerance)")
    else:
        n = sum(r in adv.named_caps for r in tols)
        what = "each capacitor within " + " and ".join(
            ([f"+-{MEASURED_C:.0%} where it was given (measured)"] if n else [])
            + ([f"+-{tol:.0%} (its tolerance)" + (" for the others" if n else "")]
               if n < len(tols) else []))
    vf = {ch: vf_ranges.get(ch, (drive.vth(ch),) * 2) if vf_ranges else (drive.vth(ch),) * 2
          for ch in adv.bands}
    if len(sources) > 1:
        what += f", the source anywhere in {sources[0]:.3g}-{sources[-1]:.3g} ohm"
    if any(lo != hi for lo, hi in vf.values()):
        what += ", each LED's switching voltage anywhere in its measured range"
    return Box(tols, sources, vf, what)


#: points per band span, as hostctl.recommend.check_bands (and the ngspice checks) look
SPAN_POINTS = 60


def _span_grid(bands: Mapping[str, Mapping[str, Any]], chans: list[str]
               ) -> tuple[np.ndarray, dict[str, list[tuple[str, slice]]]]:
    """The frequencies the verdict looks at (each band span at :data:`SPAN_POINTS`, ends
    included, as the nominal verdict), and where each channel's spans sit in them."""
    freqs, where, n = [], {}, 0
    for ch in chans:
        where[ch] = []
        for kind, spans in bands[ch].items():
            for flo, fhi in spans:
                freqs.append(np.geomspace(flo, fhi, SPAN_POINTS))
                where[ch].append((kind, slice(n, n + SPAN_POINTS)))
                n += SPAN_POINTS
    return (np.concatenate(freqs) if freqs else np.zeros(0)), where


def _margin(v: Any, f: Any, spans: list[tuple[str, slice]], vf_on: float, vf_off: float
            ) -> tuple[float, str]:
    """How far (natural log) ``v`` (volts at ``f``) clears the bands: lit above ``vf_on``
    all over the on-bands, at most ``vf_off`` all over the off-bands; > 0 meets them. And
    where it misses most."""
    worst, where = math.inf, ""
    for kind, sl in spans:
        x = np.maximum(v[sl], 1e-300)
        r = np.log(x / vf_on) if kind == "on" else np.log(vf_off / x)
        i = int(np.argmin(r))
        if r[i] < worst:
            worst = float(r[i])
            where = f"{'dark' if kind == 'on' else 'lit'} at {f[sl][i]:.0f} Hz in its {kind} band"
    return worst, where


@dataclass
class Spread:
    """One LED over the box: its least favourable margin (and where), its most favourable
    one (and where); a verdict that holds all over the box has both of one sign."""

    worst: float = math.inf
    worst_at: str = ""
    best: float = -math.inf
    best_at: str = ""


def spread(circ: Circuit, values: Mapping[str, float], adv: Advice, box: Box,
           chans: list[str]) -> dict[str, Spread]:
    """Each LED's margins over every point of the box."""
    from hostctl.leds import led_volts

    drive = adv.drive
    assert drive is not None
    out = {ch: Spread() for ch in chans}
    f, spans = _span_grid(adv.target.bands, chans)
    if not f.size:
        return out
    for caps, rs in box.points(adv.capacitance):
        volts = led_volts(circ, f, values, caps, replace(drive, r_source=rs))
        for ch in chans:
            lo, hi = box.vf[ch]
            w, at = _margin(volts[ch], f, spans[ch], hi, lo)   # least favourable V_f
            b, bat = _margin(volts[ch], f, spans[ch], lo, hi)  # most favourable
            s = out[ch]
            if w < s.worst:
                s.worst, s.worst_at = w, f"{at} with the source at {rs:.3g} ohm"
            if b > s.best:
                s.best, s.best_at = b, f"with the source at {rs:.3g} ohm"
    return out


def judged(adv: Advice) -> list[str]:
    """The LEDs whose verdict is about the build (not about what the data left unknown)."""
    return [ch for ch, b in adv.bands.items() if ch in adv.target.bands and (
        b.get("pass") or not any(w in b.get("why", "") for w in UNKNOWN_WHY))]


def _neighbours(value: float, series: str, k: int) -> list[float]:
    """``value`` and the standard values up to ``k`` steps either way, nearest first."""
    from hostctl.recommend import standard_values

    vals = standard_values(series, lo=value / 2, hi=value * 2)
    i = min(range(len(vals)), key=lambda j: abs(math.log(vals[j] / value)))
    near = vals[max(0, i - k): i + k + 1]
    return sorted(near, key=lambda v: abs(math.log(v / value)))


def search(circ: Circuit, adv: Advice, box: Box, chans: list[str]) -> dict[str, float]:
    """Parts for which each LED in ``chans`` meets its bands all over the box: for each,
    its section's parts moved by up to :data:`STEPS` E-series steps (the others held), the
    largest worst-case margin kept. An LED no neighbour makes hold keeps its parts."""
    values = dict(adv.design.values)
    secs = circ.sections or {}
    for ch in chans:
        names = [r for r, (c, _) in secs.items() if c == ch and r not in adv.held]
        if not names:
            continue
        best: tuple[float, dict[str, float]] | None = None
        for k in STEPS:
            for combo in product(*(_neighbours(values[r], adv.design.series, k)
                                   for r in names)):
                trial = {**values, **dict(zip(names, combo, strict=True))}
                w = spread(circ, trial, adv, box, [ch])[ch].worst
                if w > 0 and (best is None or w > best[0]):
                    best = (w, trial)
            if best is not None:
                break
        if best is not None:
            values = best[1]
    return values


def _set_parts(circ: Circuit, adv: Advice, values: Mapping[str, float]) -> None:
    """Put the chosen values into the design (the corner each gives; no pair offered: the
    part is chosen, not rounded)."""
    from hostctl.recommend import _model_corners

    for r, v in values.items():
        p = adv.design.parts[r]
        if p.value_ohm == v:
            continue
        p.value_ohm, p.pair, p.pair_corner_hz = v, None, None
        p.corner_hz = circ.corner_hz(r, v, adv.capacitance)
        p.corner_error = p.ideal_ohm / v - 1     # a corner scales as 1/R
    if getattr(circ, "netlist", None) is not None:
        _model_corners(circ, adv.target, adv.capacitance, adv.design)


def make_robust(adv: Advice, circ: Circuit,
                vf_ranges: Mapping[str, tuple[float, float]] | None = None,
                cap_tol: float | None = None) -> None:
    """A verdict must hold for every build the run cannot tell from the one it assumed
    (:class:`Box`). Parts whose LEDs do not meet the target all over it are replaced by
    E-series neighbours that do (:func:`search`); an LED that still flips somewhere is
    UNSURE, one that misses all over the box FAIL."""
    from hostctl.advice import judge

    if adv.drive is None or adv.withheld:
        return
    box = box_for(adv, vf_ranges, cap_tol)
    chans = judged(adv)
    sp = spread(circ, adv.design.values, adv, box, chans)
    shaky = [ch for ch in chans if not (sp[ch].worst > 0 and adv.bands[ch].get("pass"))
             and sp[ch].best > 0]
    if shaky:
        values = search(circ, adv, box, shaky)
        if values != adv.design.values:
            _set_parts(circ, adv, values)
            judge(adv, circ)
            chans = judged(adv)
            sp = spread(circ, adv.design.values, adv, box, chans)
    _mark_unsure(adv, circ, box, chans, sp)


def _mark_unsure(adv: Advice, circ: Circuit, box: Box, chans: list[str],
                 sp: Mapping[str, Spread]) -> None:
    """UNSURE where the verdict flips inside the box: a PASS as assumed that misses
    somewhere, a FAIL as assumed that meets the bands somewhere."""
    for ch in chans:
        old, s = adv.bands[ch], sp[ch]
        if old.get("pass") and s.worst > 0 or not old.get("pass") and s.best <= 0:
            continue
        if old.get("pass"):
            why = (f"its LED meets the bands as assumed, but not all over what the run "
                   f"cannot rule out ({box.what}): it is {s.worst_at}")
        else:
            why = (f"as assumed its LED fails ({old.get('why', '')}), but it meets the bands "
                   f"{s.best_at}, which the run cannot rule out ({box.what})")
        decide = deciders(circ, adv, box, ch)
        adv.bands[ch] = {"pass": False, "unsure": True, "why": f"cannot be sure: {why}",
                         "fix": old.get("fix") or decide, "decide": decide}
        adv.passed = False


def deciders(circ: Circuit, adv: Advice, box: Box, ch: str) -> str:
    """What would decide ``ch``'s verdict: the unknowns (capacitors, source, switching
    voltage) that flip it on their own; all of them when none does alone."""
    drive = adv.drive
    assert drive is not None
    fixed_vf = {c: (drive.vth(c),) * 2 for c in box.vf}
    subs = {"caps": replace(box, sources=(drive.r_source,), vf=fixed_vf),
            "source": replace(box, cap_tol={r: 0.0 for r in box.cap_tol}, vf=fixed_vf),
            "vf": replace(box, cap_tol={r: 0.0 for r in box.cap_tol},
                          sources=(drive.r_source,))}
    trivial = {"caps": not any(box.cap_tol.values()), "source": len(box.sources) < 2,
               "vf": all(lo == hi for lo, hi in box.vf.values())}
    flips = []
    for name, sub in subs.items():
        if trivial[name]:
            continue
        s = spread(circ, adv.design.values, adv, sub, [ch])[ch]
        if s.worst <= 0 < s.best:
            flips.append(name)
    names = flips or [n for n in subs if not trivial[n]]
    return "; ".join([DECIDE[n] for n in names] + [DECIDE["all"]])
