"""The topology is a hypothesis the data decide.

A preset family (``color-organ``: the buffered band-pass, the passive one, the course's
ideal circuit) lists circuits a student may have built. Each is fitted; the one the gains
favour by likelihood wins, and the report names the rejected alternatives with how far
they miss, in sigma of the likelihood ratio (sqrt of the chi-square difference at the
measured noise, or at the winner's residual noise when the probe gave no figures).
An alternative the data cannot reject, whose values differ, widens the intervals to
cover both: the answer is only as sure as the topology is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from hostctl.circuits import CIRCUITS, Circuit, get_circuit
from hostctl.errors import FitError
from hostctl.fit.result import FitResult

#: a topology whose likelihood is this many sigma below the winner's is rejected
REJECT_SIGMA = 3.0
#: false-alarm rate of the likelihood-ratio test that frees the capacitors' ESR
ESR_ALPHA = 1e-3
#: centre of the wide ESR prior (ohm) tried when film ESR cannot explain the gains
WIDE_ESR_OHM = 0.5


def choose(data: Any, candidates: Sequence[Circuit], fit_one: Any) -> FitResult:
    """Fit every candidate with ``fit_one(data, circuit)`` and keep the likeliest."""
    if len(candidates) == 1 and not _esr_names(candidates[0]):
        return fit_one(data, candidates[0])
    results = _fit_all(data, candidates, fit_one)
    if not any(r.chi2 is not None for r in results):
        return _assume_first(results)
    best, sig = _rank(results)
    esr_note = ""
    if not best.trusted and best.noise == "measured" and any(map(_esr_names, candidates)):
        wide = [_electrolytic(c) for c in candidates]
        try:
            alt_results = _fit_all(data, wide, fit_one)
        except FitError:
            alt_results = []
        if any(r.chi2 is not None for r in alt_results):
            alt, alt_sig = _rank(alt_results)
            esr_note = _esr_verdict(best, alt)
            if esr_note:
                results, best, sig = alt_results, alt, alt_sig
    if len(results) > 1:
        _explain(best, results, sig)
    if esr_note:
        best.notes.append(esr_note)
    return best


def _fit_all(data: Any, candidates: Sequence[Circuit], fit_one: Any) -> list[FitResult]:
    results: list[FitResult] = []
    errors: list[str] = []
    for c in candidates:
        try:
            results.append(fit_one(data, c))
        except FitError as e:
            errors.append(f"{c.name}: {e}")
    if not results:
        raise FitError("no candidate topology could be fitted (" + "; ".join(errors) + ")")
    return results


def _rank(results: list[FitResult]) -> tuple[FitResult, dict[str, float]]:
    """The likeliest fit and every candidate's distance from it in sigma."""
    fits = [r for r in results if r.chi2 is not None]
    best = min(fits, key=_stat)
    if best.noise == "measured":
        scale = 1.0
    else:  # the winner's residual variance per row is the noise yardstick
        scale = best.chi2 / best.dof if best.dof > 0 and best.chi2 > 0 else 1.0
    scale = max(scale, 1e-300)
    sig = {r.circuit: math.sqrt(max(_stat(r) - _stat(best), 0.0) / scale) for r in fits}
    return best, sig


def _stat(r: FitResult) -> float:
    """-2 log posterior up to a constant: the gains' chi-square plus the priors'."""
    return r.chi2 + r.prior_chi2


def _explain(best: FitResult, results: list[FitResult], sig: dict[str, float]) -> None:
    """Say which topology the data chose, and what that means for the intervals."""
    others = [r for r in results if r is not best and r.chi2 is not None]
    best.topology = {"chosen": best.circuit,
                     "rejected": {r.circuit: round(sig[r.circuit], 2) for r in others}}
    if not others:
        return
    parts = ", ".join(f"{r.circuit} misses by {sig[r.circuit]:.1f} sigma" for r in others)
    best.notes.append(f"topology chosen by the data: {best.circuit} ({parts})")
    close = [r for r in others if sig[r.circuit] < REJECT_SIGMA]
    for alt in close:
        widened = []
        for k, (lo, hi) in best.ci95.items():
            if k not in alt.values:
                continue
            alo, ahi = alt.ci95.get(k, (alt.values[k], alt.values[k]))
            if alo < lo or ahi > hi:
                best.ci95[k] = (min(lo, alo), max(hi, ahi))
                widened.append(k)
        if widened:
            best.warnings.append(
                f"the data cannot tell {best.circuit} from {alt.circuit} "
                f"({sig[alt.circuit]:.1f} sigma apart): the intervals of "
                f"{', '.join(widened)} cover both; add tones near the corners or check how "
                "the band-pass is built")


def _esr_names(circ: Circuit) -> list[str]:
    return [k for k in (getattr(circ, "nuisance", None) or {}) if k.upper().startswith("ESR")]


def _electrolytic(circ: Circuit) -> Circuit:
    """The same circuit with its capacitors' ESR held only by a wide prior (film to
    electrolytic: 0.5 ohm, a factor e^0.9 per sigma), not the film range.

    The capacitors themselves are held at the given values: ohms of ESR in the band-pass's
    series branch move its response as the capacitors' ratio does (the passive build), so
    the data cannot weigh both; ESR is what the misfit asks for."""
    from dataclasses import replace

    from hostctl.circuits.directives import Nuisance

    names = _esr_names(circ)
    if not names:
        return circ
    wide = {k: (Nuisance(k, WIDE_ESR_OHM, WIDE_ESR_OHM * (math.e ** 0.9 - 1)) if k in names
                else v) for k, v in circ.nuisance.items() if k not in _cap_names(circ)}
    return replace(circ, nuisance=wide)


def _cap_names(circ: Circuit) -> list[str]:
    """Nuisances that scale a section's capacitor (``S_x``: C_x over its nominal)."""
    return [k for k in (getattr(circ, "nuisance", None) or {}) if k.startswith("S_")]


def _esr_verdict(best: FitResult, alt: FitResult) -> str:
    """A note when the likelihood ratio asks for electrolytic ESR, else "" (and a warning
    on ``best`` that freeing it did not help)."""
    from hostctl.fit.special import chi2_isf

    k = len([n for n in alt.nuisance if n.upper().startswith("ESR")])
    gain = _stat(best) - _stat(alt)
    if k == 0 or gain < chi2_isf(ESR_ALPHA, k):
        best.warnings.append("freeing the capacitors' ESR does not explain the misfit "
                             f"(chi-square only {max(gain, 0):.1f} lower)")
        return ""
    esr = ", ".join(f"{n} {v:.3g} ohm ({lo:.3g}..{hi:.3g})"
                    for n, (v, lo, hi) in alt.nuisance.items() if n.upper().startswith("ESR"))
    if not alt.trusted:
        alt.warnings.append("even with the capacitors' ESR fitted the gains do not follow the "
                            "model: the values are not to be used")
    held = (" (capacitors held at the given values: ESR this large and their tolerance "
            "move the response alike)" if any(k.startswith("S_") for k in best.nuisance)
            else "")
    return (f"capacitor ESR fitted (likelihood ratio {math.sqrt(gain):.1f} sigma over film "
            f"ESR): {esr}{held}")


def _assume_first(results: list[FitResult]) -> FitResult:
    """LED-only data: no likelihood to weigh topologies by, only consistency.

    Candidates the LED rows contradict are rejected. Of the rest the family's default is
    kept (the first consistent one), its intervals widened over every other; where the
    consistent candidates disagree on a resistor (one's value outside the other's
    interval) the data cannot say which value is right, so no part may rest on it
    (``topology["undecided"]``: resistor -> why; the advice withholds those parts)."""
    ok = [r for r in results if r.trusted]
    first = ok[0] if ok else results[0]
    bad = [r for r in results if not r.trusted and r is not first]
    others = [r for r in ok if r is not first]
    own = dict(first.ci95)
    undecided: dict[str, list[str]] = {}
    # a build is judged by its bench preset where that is consistent too: its -ideal twin
    # differs from the others by parasitics as well as by how it is built
    names = {r.circuit for r in ok}
    builds = {n for n in names if not (n.endswith("-ideal") and _build(n) in names)}
    for alt in others:
        for k, (lo, hi) in own.items():
            if k not in alt.values:
                continue
            alo, ahi = alt.ci95.get(k, (alt.values[k], alt.values[k]))
            if _build(alt.circuit) != _build(first.circuit) and alt.circuit in builds and not (
                    lo <= alt.values[k] <= hi and alo <= first.values[k] <= ahi):
                undecided.setdefault(k, []).append(
                    f"{alt.circuit} gives {alt.values[k]:.4g} ({alo:.4g}..{ahi:.4g})")
            c_lo, c_hi = first.ci95[k]
            first.ci95[k] = (min(c_lo, alo), max(c_hi, ahi))
    first.topology = {"chosen": first.circuit, "assumed": bool(others),
                      "rejected": {r.circuit: None for r in bad},
                      "covers": [r.circuit for r in ok] or [first.circuit]}
    if bad:
        first.notes.append("topology: the LED rows contradict " + ", ".join(
            r.circuit for r in bad) + f"; {first.circuit} is consistent with them")
    if not others:
        return first
    first.notes.append(f"topology assumed ({first.circuit}): LED states alone cannot tell "
                       "the candidates apart; the intervals cover "
                       + ", ".join(r.circuit for r in ok))
    if undecided:
        why = {k: f"the LED data cannot tell {first.circuit} (its value "
                  f"{first.values[k]:.4g}, {own[k][0]:.4g}..{own[k][1]:.4g}) from "
                  + "; ".join(v) + " (naming the build, or gains, decide)"
               for k, v in undecided.items()}
        first.topology["undecided"] = why
        first.warnings.append(
            f"the LED data are consistent with {', '.join(r.circuit for r in ok)}, which "
            f"disagree on {', '.join(undecided)}: no part is offered for "
            f"{'it' if len(undecided) == 1 else 'them'} (the intervals cover every "
            f"candidate){_decide(ok)}")
    return first


def _build(name: str) -> str:
    """The build a preset stands for: an ``-ideal`` twin (no probe, no parasitics) is the
    same build as its bench preset, so their small differences leave no doubt about how the
    circuit is built (they only widen the intervals)."""
    return name.removesuffix("-ideal")


def _decide(ok: list[FitResult]) -> str:
    """What tells the builds apart when LED states cannot (a family's head names the whole
    family, so only the other members can be named alone)."""
    named = [r.circuit for r in ok[1:] if not r.circuit.endswith("-ideal")]
    how = (f"the circuit {' or '.join(named)} if that is the build, or " if named else "")
    return (f"; to decide, name the build ({how}its netlist file, e.g. "
            f"hostctl/circuits/presets/{ok[0].circuit}.cir, fitted as it is) or measure the "
            "gains too (mode both, or gain rows in the file)")


def candidates(circuit: Circuit | str) -> list[Circuit]:
    """The circuits a name stands for: its family's members (the named one first), or
    itself; a Circuit object stands for itself."""
    if not isinstance(circuit, str):
        return [circuit]
    named = get_circuit(circuit)
    fam = getattr(named, "family", None)
    if not fam or fam != named.name:
        return [named]
    members = [c for c in CIRCUITS.values() if getattr(c, "family", None) == fam]
    return [named] + [c for c in members if c is not named]
