"""Board files (sims/boards/NAME.toml): a netlist plus part tolerances, probe and link physics.

A board names its circuit as a netlist (``netlist = "bench.cir"``, relative to the TOML
file, else to sims/boards/; default ``ideal-<circuit>.cir``) and hostctl's preset
(``circuit``: the fit's model, and the fallback physics when ngspice is missing). Per seed
the true part values are drawn uniformly within tolerance around the nominal ones:
``[resistors]`` with ``resistor_pct``, the section capacitors ``C_<section>`` with
``capacitor_pct``, and every other netlist parameter listed under ``[parts]`` as
``NAME = {nominal = X, pct = P}`` or ``NAME = {range = [LO, HI]}``.
"""

from __future__ import annotations

import math
import os
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostctl.errors import InputError

BOARDS_DIR = Path(__file__).resolve().parent / "boards"
#: the color organ's outputs in probe-input order (A1..A3, LEDs D2..D4): the wiring of a board
#: whose netlist names none, and the order LED switching voltages are listed in; the physics
#: wires each board as its netlist says (physics.wired_inputs).
CHANNEL_ORDER = ("low", "band", "high")
#: Plausible part values (a board outside them is a typo, and ngspice would choke on it).
R_RANGE = (1e-3, 1e9)
C_RANGE = (1e-15, 1.0)


@dataclass(frozen=True)
class Board:
    """A board description (sims/boards/NAME.toml)."""

    name: str
    circuit: str
    resistors: dict[str, float]             # nominal, ohm
    capacitance_f: dict[str, float]         # nominal, farad, per resistor's section
    resistor_tol: float = 0.0               # fraction (0.05 = 5 %)
    capacitor_tol: float = 0.0
    peak_v_at_0dbfs: float = 1.0
    audio_max_hz: float | None = None
    bias_v: float = 2.5
    adc_bits: int = 10
    vref_v: float = 5.0
    noise_lsb: float = 0.0
    rate_hz: float = 5751.0
    nominal_rate_hz: int = 5700
    led_threshold_v: tuple[float, float, float] = (0.3, 0.3, 0.3)
    baudrate: int = 115200
    boot_s: float = 0.3
    description: str = ""
    path: str = ""
    netlist: str = ""                       # absolute path of the board's netlist
    parts: dict[str, tuple[float, float]] = field(default_factory=dict)  # name -> [lo, hi]


def list_boards() -> list[str]:
    return sorted(p.stem for p in BOARDS_DIR.glob("*.toml"))


def _get(d: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str,
         default: Any = None, required: bool = False) -> Any:
    if key not in d:
        if required:
            raise InputError(f"missing '{key}'", where)
        return default
    v = d[key]
    if kind in (float, int) or kind == (float, int):
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise InputError(f"'{key}' must be a number, got {v!r}", where)
        return v
    if not isinstance(v, kind):
        raise InputError(f"'{key}' has the wrong type ({type(v).__name__})", where)
    return v


def _board_path(name_or_path: str | os.PathLike) -> Path:
    s = str(name_or_path)
    path = Path(s)
    if not (s.endswith(".toml") or os.sep in s) or not path.exists():
        cand = BOARDS_DIR / f"{s}.toml"
        if cand.exists():
            return cand
        if not path.exists():
            raise InputError(f"unknown board '{s}' (known: {', '.join(list_boards())}; "
                             "or give a path to a .toml file)")
    return path


def _netlist(data: Mapping[str, Any], circuit: str, path: Path, where: str) -> str:
    name = _get(data, "netlist", str, where, default=f"ideal-{circuit}.cir")
    for folder in (path.parent, BOARDS_DIR):
        cand = folder / name
        if cand.is_file():
            return str(cand.resolve())
    raise InputError(f"netlist '{name}' not found (beside the board file or in {BOARDS_DIR})",
                     where)


def _parts(data: Mapping[str, Any], where: str) -> dict[str, tuple[float, float]]:
    """``[parts]``: netlist parameters drawn per seed, as uniform ranges."""
    out: dict[str, tuple[float, float]] = {}
    w = where + " [parts]"
    for name, spec in _get(data, "parts", dict, where, default={}).items():
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name) or not isinstance(spec, dict):
            raise InputError(f"'{name}' must be NAME = {{nominal = X, pct = P}} or "
                             "{range = [LO, HI]}", w)
        if "range" in spec:
            r = spec["range"]
            if (not isinstance(r, list) or len(r) != 2
                    or any(isinstance(x, bool) or not isinstance(x, (int, float)) for x in r)):
                raise InputError(f"{name}: range must be [LO, HI]", w)
            lo, hi = float(r[0]), float(r[1])
        else:
            nom = float(_get(spec, "nominal", (float, int), w, required=True))
            pct = float(_get(spec, "pct", (float, int), w, 0.0))
            if not 0 <= pct < 100:
                raise InputError(f"{name}: pct must be in 0..100, got {pct}", w)
            lo, hi = nom * (1 - pct / 100), nom * (1 + pct / 100)
        if not (math.isfinite(lo) and math.isfinite(hi) and 0 <= lo <= hi):
            raise InputError(f"{name}: need 0 <= low <= high, got [{lo}, {hi}]", w)
        out[name] = (lo, hi)
    return out


def _thresholds(led: Mapping[str, Any], peak: float, where: str) -> tuple[float, ...]:
    if "threshold_v" in led:
        t = led["threshold_v"]
        items = t if isinstance(t, list) else [t] * 3
        thr = tuple(float(_get({"threshold_v": x}, "threshold_v", (float, int), where + " [led]"))
                    for x in items)
    elif "threshold_gain" in led:
        g = float(_get(led, "threshold_gain", (float, int), where))
        lvl = float(_get(led, "threshold_level_dbfs", (float, int), where, -6.0))
        if not -120 <= lvl <= 0:
            raise InputError(f"[led] threshold_level_dbfs must be in -120..0, got {lvl}", where)
        thr = (peak * 10 ** (lvl / 20) * g,) * 3
    else:
        thr = (0.3, 0.3, 0.3)
    if len(thr) != 3 or any(not (math.isfinite(x) and x > 0) for x in thr):
        raise InputError("[led] threshold_v must be one positive number or a list of 3", where)
    return thr


def _values(data: Mapping[str, Any], circ: Any, where: str
            ) -> tuple[dict[str, float], dict[str, float]]:
    res_t = _get(data, "resistors", dict, where, required=True)
    resistors = {}
    for r in circ.resistors:
        v = _get(res_t, r, (float, int), where + " [resistors]", required=True)
        if not R_RANGE[0] <= v <= R_RANGE[1]:
            raise InputError(f"[resistors] {r} must be in {R_RANGE[0]:g}..{R_RANGE[1]:g} ohm, "
                             f"got {v}", where)
        resistors[r] = float(v)
    extra = set(res_t) - set(circ.resistors)
    if extra:
        raise InputError(f"[resistors] {', '.join(sorted(extra))} not in circuit "
                         f"'{circ.name}' ({', '.join(circ.resistors)})", where)
    cap = data.get("capacitance_f", 1e-6)
    if isinstance(cap, dict):
        default = _get(cap, "default", (float, int), where + " [capacitance_f]", 1e-6)
        caps = {r: float(_get(cap, r, (float, int), where + " [capacitance_f]",
                              _get(cap, "C" + r[1:], (float, int), where + " [capacitance_f]",
                                   default)))
                for r in circ.resistors}
    else:
        caps = {r: float(_get(data, "capacitance_f", (float, int), where, 1e-6))
                for r in circ.resistors}
    if any(not (C_RANGE[0] <= c < C_RANGE[1]) for c in caps.values()):
        raise InputError("capacitance_f must be between 1e-15 and 1 farad", where)
    return resistors, caps


def load_board(name_or_path: str | os.PathLike) -> Board:
    """A board by name (a file in sims/boards/) or by path to a TOML file."""
    from hostctl.circuits import get_circuit

    path = _board_path(name_or_path)
    where = str(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise InputError(f"not valid TOML: {e}", where) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read: {e}", where) from None
    circ = get_circuit(_get(data, "circuit", str, where, required=True))
    resistors, caps = _values(data, circ, where)
    tol = _get(data, "tolerance", dict, where, default={})
    audio = _get(data, "audio", dict, where, default={})
    adc = _get(data, "adc", dict, where, default={})
    led = _get(data, "led", dict, where, default={})
    ser = _get(data, "serial", dict, where, default={})
    peak = float(_get(audio, "peak_v_at_0dbfs", (float, int), where, 1.0))
    if not 0 < peak <= 100:
        raise InputError(f"[audio] peak_v_at_0dbfs must be in (0, 100] volts, got {peak}", where)
    thr = _thresholds(led, peak, where)
    amax = _get(audio, "max_hz", (float, int), where + " [audio]")
    if amax is not None and not amax > 0:
        raise InputError(f"[audio] max_hz must be > 0 Hz, got {amax}", where)
    board = Board(
        name=str(data.get("name", path.stem)),
        circuit=circ.name,
        resistors=resistors,
        capacitance_f=caps,
        resistor_tol=float(_get(tol, "resistor_pct", (float, int), where, 0.0)) / 100,
        capacitor_tol=float(_get(tol, "capacitor_pct", (float, int), where, 0.0)) / 100,
        peak_v_at_0dbfs=peak,
        audio_max_hz=None if amax is None else float(amax),
        bias_v=float(_get(adc, "bias_v", (float, int), where, 2.5)),
        adc_bits=int(_get(adc, "bits", (float, int), where, 10)),
        vref_v=float(_get(adc, "vref_v", (float, int), where, 5.0)),
        noise_lsb=float(_get(adc, "noise_lsb", (float, int), where, 0.0)),
        rate_hz=float(_get(adc, "rate_hz", (float, int), where, 5751.0)),
        nominal_rate_hz=int(_get(adc, "nominal_rate_hz", (float, int), where, 5700)),
        led_threshold_v=thr,  # type: ignore[arg-type]
        baudrate=int(_get(ser, "baudrate", (float, int), where, 115200)),
        boot_s=float(_get(ser, "boot_s", (float, int), where, 0.3)),
        description=str(data.get("description", "")),
        path=where,
        netlist=_netlist(data, circ.name, path, where),
        parts=_parts(data, where),
    )
    if not (0 <= board.resistor_tol < 1 and 0 <= board.capacitor_tol < 1):
        raise InputError("[tolerance] percentages must be in 0..100", where)
    if not (1 <= board.rate_hz <= 1e6 and 0 <= board.noise_lsb <= 1e3
            and 1 <= board.adc_bits <= 16 and 0 < board.vref_v <= 100
            and 0 <= board.bias_v <= board.vref_v and 300 <= board.baudrate <= 1e7
            and 0 <= board.boot_s <= 60 and 1 <= board.nominal_rate_hz <= 1e6):
        raise InputError("[adc]/[audio]/[serial] values out of range", where)
    return board


@dataclass(frozen=True)
class TrueValues:
    """One seed's built board: section parts keyed by resistor, and every netlist value."""

    resistors: dict[str, float]
    capacitances: dict[str, float]          # keyed by the resistor of the section
    params: dict[str, float]                # netlist parameter -> value (R_*, C_*, parts)


def draw_true_values(board: Board, resistors: tuple[str, ...], seed: int) -> TrueValues:
    """Uniform within tolerance; the section draws are the same as before netlists existed."""
    import numpy as np

    rng = np.random.default_rng([int(seed), 0])
    u_r = rng.uniform(-1.0, 1.0, len(resistors))
    u_c = rng.uniform(-1.0, 1.0, len(resistors))
    res = {r: board.resistors[r] * (1 + board.resistor_tol * float(u)) if board.resistor_tol
           else board.resistors[r] for r, u in zip(resistors, u_r, strict=True)}
    caps = {r: board.capacitance_f[r] * (1 + board.capacitor_tol * float(u))
            if board.capacitor_tol else board.capacitance_f[r]
            for r, u in zip(resistors, u_c, strict=True)}
    params = dict(res)
    params.update({"C" + r[1:]: c for r, c in caps.items()})
    prng = np.random.default_rng([int(seed), 2])
    for name in sorted(board.parts):
        lo, hi = board.parts[name]
        params[name] = float(prng.uniform(lo, hi)) if hi > lo else lo
    return TrueValues(res, caps, params)


_DIRECTIVE = re.compile(r"^\*@\s*(channels|leds)\s+(.*)$", re.IGNORECASE)


def netlist_nodes(text: str) -> tuple[dict[str, str], dict[str, str]]:
    """``*@ channels`` (ref/low/band/high -> probe pin node) and ``*@ leds`` (-> node)."""
    found: dict[str, dict[str, str]] = {"channels": {}, "leds": {}}
    for line in text.splitlines():
        m = _DIRECTIVE.match(line.strip())
        if m:
            for item in m.group(2).split():
                k, _, v = item.partition("=")
                if v:
                    found[m.group(1).lower()][k] = v
    pins = found["channels"] or {"ref": "a0", "low": "a1", "band": "a2", "high": "a3"}
    leds = found["leds"] or {c: c for c in pins if c != "ref"}
    return pins, leds
