"""Realistic color-organ breadboards, drawn at random and measured through ngspice.

For the fit's acceptance tests: a board as students build it (E24 resistors near the
notebook design, film capacitors 1 uF +-10 % with ESR, the probe front end of
firmware/README.md with its coupling capacitor +-20 % and 20k/20k bias +-1 %, a 24 pF
pin, a sound-card source resistance), the band-pass passive or buffered. Its truth is an
ngspice AC analysis of sims/boards/bench.cir (passive) or bench-buffered.cir (buffered)
with the drawn values: the very netlists the virtual bench runs.

    rng = numpy.random.default_rng(7)
    board = draw_board(rng, topology="passive", esr=(2.0, 5.0))     # electrolytics
    data = measure(board, numpy.geomspace(20, 20000, 80), rng=rng)  # a MeasurementSet
    data.write_csv(path); board.capacitance_arg                     # -> --capacitance ...
    board.with_values(R_low=220.0).response([1000.0])               # parts put back

The probe's four inputs share one coupling-capacitor value (probe.cir's ``C_couple``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from sims import spice
from sims.boards import BOARDS_DIR, CHANNEL_ORDER, netlist_nodes

#: topology -> the board netlist it runs
TOPOLOGIES = {"passive": BOARDS_DIR / "bench.cir", "buffered": BOARDS_DIR / "bench-buffered.cir"}
SECTIONS = ("low", "band_low", "band_high", "high")
#: The notebook design: R = 1 / (2 pi f C) at C = 1 uF for 800, 4000, 1000, 5000 Hz.
DESIGN = {"R_low": 800.0, "R_band_low": 4000.0, "R_band_high": 1000.0, "R_high": 5000.0}


def design_resistors(capacitance_f: float = 1e-6) -> dict[str, float]:
    return {r: 1 / (2 * math.pi * f * capacitance_f) for r, f in DESIGN.items()}


@dataclass(frozen=True)
class DrawnBoard:
    """One built board: its netlist and every value ngspice runs it with."""

    topology: str                      # "passive" | "buffered"
    netlist: Path
    params: dict[str, float]           # true values of every netlist parameter
    nominal: dict[str, float]          # the designed parts (E24 resistors, 1 uF, 10 uF, ...)
    nodes: tuple[str, ...] = field(default=("a0", "a1", "a2", "a3", "low", "band", "high"))

    @property
    def resistors(self) -> dict[str, float]:
        """True section resistors (R_low, R_band_low, R_band_high, R_high), ohm."""
        return {f"R_{s}": self.params[f"R_{s}"] for s in SECTIONS}

    @property
    def capacitances(self) -> dict[str, float]:
        """True section capacitors keyed C_low ... (what ``--capacitance`` takes), farad."""
        return {f"C_{s}": self.params[f"C_{s}"] for s in SECTIONS}

    @property
    def capacitance_arg(self) -> str:
        """``C_low=...,C_band_low=...`` for ``hostctl fit --capacitance``."""
        return ",".join(f"{k}={v!r}" for k, v in self.capacitances.items())

    @property
    def channels(self) -> dict[str, str]:
        """Probe channel -> pin node (ref=a0, low=a1, ...)."""
        return netlist_nodes(self.netlist.read_text(encoding="utf-8"))[0]

    @property
    def led_nodes(self) -> dict[str, str]:
        """LED channel -> the filter output node it sees (low=low, ...)."""
        return netlist_nodes(self.netlist.read_text(encoding="utf-8"))[1]

    def with_values(self, **values: float) -> DrawnBoard:
        """The same board with some parts replaced (e.g. recommended resistors put back)."""
        unknown = set(values) - set(self.params)
        if unknown:
            raise KeyError(f"not parameters of this board: {', '.join(sorted(unknown))}")
        return replace(self, params={**self.params, **{k: float(v) for k, v in values.items()}})

    def response(self, freqs_hz: Iterable[float]) -> dict[str, np.ndarray]:
        """ngspice: node -> complex voltage per volt of the sound card (AC 1) at each tone."""
        ac = spice.ac_response(self.netlist, self.params, self.nodes)
        return ac(np.asarray(list(freqs_hz), dtype=np.float64))

    def gains(self, freqs_hz: Iterable[float]) -> dict[str, np.ndarray]:
        """channel -> |V(aK) / V(a0)| (noiseless), what the probe's gain rows measure."""
        v = self.response(freqs_hz)
        pins = self.channels
        ref = v[pins["ref"]]
        return {c: np.abs(v[pins[c]] / ref) for c in CHANNEL_ORDER if c in pins}

    def netlist_text(self) -> str:
        """A self-contained netlist with these values (runs unchanged in ``ngspice -b``)."""
        nl = spice.Netlist.load(self.netlist)
        values = " ".join(f"{k}={v!r}" for k, v in self.params.items())
        return (f"* {self.topology} color organ drawn by sims.breadboards\n{nl.body()}"
                f".param {values}\n.end\n")


def _e24(value: float) -> float:
    from hostctl.recommend import snap

    return snap(value, "E24")


def _uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(rng.uniform(lo, hi)) if hi > lo else float(lo)


def draw_board(rng: np.random.Generator, *, topology: str = "passive",
               esr: tuple[float, float] = (0.02, 0.1), source: tuple[float, float] = (0.0, 75.0),
               resistor_pct: float = 5.0, capacitor_pct: float = 10.0, capacitance_f: float = 1e-6,
               couple_pct: float = 20.0, couple_f: float = 10e-6, bias_pct: float = 1.0,
               bias_ohm: float = 20e3, pin_f: float = 24e-12, design_spread: float = 0.1,
               design: Mapping[str, float] | None = None) -> DrawnBoard:
    """A random board (uniform draws within each tolerance or range).

    Nominal resistors: the E24 value nearest ``design * (1 + design_spread * u)``, u in
    [-1, 1] (``design`` defaults to the notebook's values), so boards differ in the parts
    chosen as well as in their tolerances. ``esr``: ohm range of every section capacitor's
    ESR ((2, 5) for electrolytics); ``source``: the sound card's source resistance range
    (ngspice treats a resistance below 1 mOhm as 1 mOhm).
    """
    if topology not in TOPOLOGIES:
        raise ValueError(f"topology must be one of {', '.join(TOPOLOGIES)}, got {topology!r}")
    des = dict(design or design_resistors(capacitance_f))
    nominal: dict[str, float] = {}
    params: dict[str, float] = {}
    for s in SECTIONS:
        r = f"R_{s}"
        nominal[r] = _e24(des[r] * (1 + design_spread * _uniform(rng, -1, 1)))
        params[r] = nominal[r] * (1 + resistor_pct / 100 * _uniform(rng, -1, 1))
    for s in SECTIONS:
        nominal[f"C_{s}"] = capacitance_f
        params[f"C_{s}"] = capacitance_f * (1 + capacitor_pct / 100 * _uniform(rng, -1, 1))
    for s in SECTIONS:
        params[f"ESR_{s}"] = max(_uniform(rng, *esr), 1e-3)
    nominal.update(C_couple=couple_f, R_bias_top=bias_ohm, R_bias_bot=bias_ohm, C_pin=pin_f)
    params["C_couple"] = couple_f * (1 + couple_pct / 100 * _uniform(rng, -1, 1))
    params["R_bias_top"] = bias_ohm * (1 + bias_pct / 100 * _uniform(rng, -1, 1))
    params["R_bias_bot"] = bias_ohm * (1 + bias_pct / 100 * _uniform(rng, -1, 1))
    params["C_pin"] = pin_f
    params["R_source"] = max(_uniform(rng, *source), 1e-3)
    return DrawnBoard(topology, TOPOLOGIES[topology], params, nominal)


def amplitude_v(level_dbfs: float = -6.0, peak_v_at_0dbfs: float = 1.0) -> float:
    """The sound card's peak volts at ``level_dbfs`` (what drives ``Vs``)."""
    return peak_v_at_0dbfs * 10 ** (level_dbfs / 20)


def led_voltages(board: DrawnBoard, freqs_hz: Iterable[float], *, level_dbfs: float = -6.0,
                 peak_v_at_0dbfs: float = 1.0) -> dict[str, np.ndarray]:
    """LED channel -> peak volts at the filter output node that LED sees (not the pin).

    Unlike the gain ratios, these depend on the source resistance.
    """
    v = board.response(freqs_hz)
    a = amplitude_v(level_dbfs, peak_v_at_0dbfs)
    return {c: a * np.abs(v[n]) for c, n in board.led_nodes.items()}


def measure(board: DrawnBoard, freqs_hz: Sequence[float] | np.ndarray, *, noise: float = 0.003,
            rng: np.random.Generator, level_dbfs: float = -6.0, peak_v_at_0dbfs: float = 1.0,
            channels: Sequence[str] = CHANNEL_ORDER):
    """Gain rows ``|V(aK)/V(a0)| * (1 + noise * N(0, 1))`` per channel and tone.

    ``vin_v`` is the peak amplitude at the A0 pin, ``vout_v = vin_v * gain``. Returns a
    hostctl MeasurementSet (rows ordered by tone, then channel).
    """
    from hostctl.dataset import Measurement, MeasurementSet

    f = np.asarray(freqs_hz, dtype=np.float64)
    v = board.response(f)
    pins = board.channels
    vin = amplitude_v(level_dbfs, peak_v_at_0dbfs) * np.abs(v[pins["ref"]])
    gains = {c: np.abs(v[pins[c]] / v[pins["ref"]]) * (1 + noise * rng.standard_normal(f.size))
             for c in channels}
    rows = [Measurement(frequency_hz=float(f[i]), channel=c, gain=float(gains[c][i]),
                        vin_v=float(vin[i]), vout_v=float(vin[i] * gains[c][i]),
                        level_dbfs=float(level_dbfs))
            for i in range(f.size) for c in channels]
    meta = {"board": f"sims.breadboards {board.topology}", "noise": f"{noise:g}"}
    return MeasurementSet(rows, meta)


def bench_board_toml(rng: np.random.Generator, *, topology: str = "passive",
                     source: tuple[float, float] = (0.0, 32.0),
                     led_vf: tuple[float, float] = (0.22, 0.36), design_spread: float = 0.1,
                     name: str = "drawn") -> tuple[str, dict[str, float]]:
    """A virtual-bench board file (TOML text) drawn like :func:`draw_board`: the bench
    board of ``topology`` with its nominal resistors the E24 value nearest the notebook
    design +- ``design_spread``, one source resistance drawn from ``source`` and each LED
    its own switching voltage drawn from ``led_vf`` (a red, a green and a blue LED). The
    bench then draws the parts' tolerances per seed. Returns the text and what was drawn
    (``R_source``, ``vf_low``, ``vf_band``, ``vf_high``)."""
    src = TOPOLOGIES[topology].with_suffix(".toml").read_text(encoding="utf-8")
    des = design_resistors()
    drawn = {"R_source": max(_uniform(rng, *source), 1e-3)}
    vf = [round(_uniform(rng, *led_vf), 3) for _ in CHANNEL_ORDER]
    drawn.update({f"vf_{c}": v for c, v in zip(CHANNEL_ORDER, vf, strict=True)})
    out = []
    section = ""
    for line in src.splitlines():
        key = line.split("=")[0].strip()
        if line.startswith("["):
            section = line.split("]")[0].strip("[")
        if section == "resistors" and key in des:
            r = _e24(des[key] * (1 + design_spread * _uniform(rng, -1, 1)))
            line = f"{key} = {r!r}"
        elif key == "name":
            line = f'name = "{name}"'
        elif key == "description":
            line = (f'description = "{topology} color organ drawn by sims.breadboards: source '
                    f'{drawn["R_source"]:.3g} ohm, LEDs {vf} V"')
        elif key == "netlist":
            line = f'netlist = "{TOPOLOGIES[topology].resolve()}"'
        elif key == "R_source":
            line = f"R_source = {{ range = [{drawn['R_source']!r}, {drawn['R_source']!r}] }}"
        elif key == "threshold_v":
            line = f"threshold_v = {vf!r}"
        out.append(line)
    return "\n".join(out) + "\n", drawn
