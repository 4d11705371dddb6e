"""The board's physics: complex node voltages from ngspice, and what one MEASURE window sees.

Truth comes from outside hostctl: every board's response is an ngspice AC analysis of its
netlist at the seed's true part values (sims/spice.py). Only where ngspice is missing does
:func:`board_response` fall back, with one line on stderr saying so, to hostctl's own
closed-form model (which is then no independent truth).
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sims import spice
from sims.boards import Board, TrueValues, netlist_nodes

#: freqs (Hz, array) -> node -> complex voltage per volt of the sound card
NodeResponse = Callable[[np.ndarray], dict[str, np.ndarray]]
_warned = {"missing": False}


def _warn_missing() -> None:
    if not _warned["missing"]:
        _warned["missing"] = True
        print(spice.MISSING_MESSAGE, file=sys.stderr, flush=True)


def closed_form_response(circuit: str, true: TrueValues, pins: Mapping[str, str],
                         leds: Mapping[str, str]) -> NodeResponse:
    """hostctl's own |H| (no phase, no probe front end): the fallback, not a truth."""
    from hostctl.circuits import get_circuit

    circ = get_circuit(circuit)

    def resp(freqs: np.ndarray) -> dict[str, np.ndarray]:
        f = np.asarray(freqs, dtype=np.float64)
        h = circ.response(f, true.resistors, true.capacitances)
        out = {pins.get("ref", "a0"): np.ones(f.shape, dtype=np.complex128)}
        for ch in h:             # the circuit's own outputs, wired as the board says
            v = np.asarray(h[ch].detach().numpy(), dtype=np.complex128).reshape(f.shape)
            if ch in pins:
                out[pins[ch]] = v
            if ch in leds:
                out[leds[ch]] = v
        return out

    return resp


def solver_response(netlist: str, params: Mapping[str, float],
                    nodes: Sequence[str]) -> NodeResponse | None:
    """hostctl's own nodal solver on the board's netlist (None where hostctl has none)."""
    try:
        from hostctl.circuits import load_netlist
    except ImportError:
        return None
    circ = load_netlist(netlist, register=False)
    values = {k: float(v) for k, v in params.items() if circ.netlist.param(k) is not None}

    def resp(freqs: np.ndarray) -> dict[str, np.ndarray]:
        import torch

        f = np.asarray(freqs, dtype=np.float64)
        omega = torch.as_tensor(2 * math.pi * f.reshape(-1), dtype=torch.float64)
        v = circ.node_voltages(omega, values, nodes=list(nodes))
        return {n: v[n].detach().numpy().astype(np.complex128).reshape(f.shape) for n in nodes}

    return resp


def board_response(board: Board, true: TrueValues) -> tuple[NodeResponse, dict[str, str],
                                                              dict[str, str]]:
    """(response, channel -> pin node, LED channel -> node) of a built board.

    The one place that decides between ngspice and the fallback (hostctl's nodal solver on
    the same netlist where hostctl has one, else its closed-form |H|).
    """
    with open(board.netlist, encoding="utf-8") as fh:
        pins, leds = netlist_nodes(fh.read())
    nodes = tuple(dict.fromkeys([*pins.values(), *leds.values()]))
    if spice.ngspice_path() is None:
        _warn_missing()
        resp = solver_response(board.netlist, true.params, nodes)
        if resp is None:
            resp = closed_form_response(board.circuit, true, pins, leds)
        return resp, pins, leds
    ac = spice.ac_response(board.netlist, true.params, nodes)
    return ac, pins, leds


@dataclass
class Phasors:
    """Complex voltage per volt of the sound card at one tone: A0..A3 pins and the LED nodes."""

    pins: list[complex]       # A0, A1, A2, A3 (0 where the board has no such channel)
    leds: list[complex]       # low, band, high output nodes (0 where missing)


def phasors_at(resp: NodeResponse, pins: Mapping[str, str], leds: Mapping[str, str],
               freq_hz: float) -> Phasors:
    v = resp(np.array([float(freq_hz)]))
    pin, led = [complex(v[pins["ref"]][0]) if "ref" in pins else 0j, 0j, 0j, 0j], [0j] * 3
    for ch, k in wired_inputs(pins).items():     # the probe input (and LED) each output drives
        pin[k] = complex(v[pins[ch]][0])
        if ch in leds:
            led[k - 1] = complex(v[leds[ch]][0])
    return Phasors(pin, led)


def wired_inputs(pins: Mapping[str, str]) -> dict[str, int]:
    """Channel -> probe input 1..3 (A1..A3, its LED on D2..D4), from the board's netlist as
    hostctl reads a netlist's probe wiring (a node ``aK`` is input K)."""
    from hostctl.circuits.directives import probe_inputs

    return probe_inputs([c for c in pins if c != "ref"], pins)


def sample_window(board: Board, ph: Phasors | None, amp_v: float, freq_hz: float, phi: float,
                  t0: float, n: int, rng: np.random.Generator
                  ) -> tuple[list[np.ndarray], list[int]]:
    """ADC counts of A0..A3 and LED-lit counts for ``n`` rounds (see sims/bench.py).

    Channel ``c`` reads ``bias + amp * Im(P_c exp(j(w t + phi)))``: each pin has its own
    amplitude and phase, and conversion ``c`` happens at ``t_k + c / (5 rate)``.
    """
    period = 1.0 / board.rate_hz
    k = np.arange(n, dtype=np.float64)
    w = 2 * math.pi * freq_hz
    scale = 2 ** board.adc_bits / board.vref_v
    top = 2 ** board.adc_bits - 1
    analog = []
    for c in range(4):
        p = ph.pins[c] if ph is not None else 0j
        if p and amp_v:
            t = t0 + (k + c / 5) * period
            v = board.bias_v + amp_v * np.imag(p * np.exp(1j * (w * t + phi)))
        else:
            v = np.full(n, board.bias_v)
        x = v * scale
        if board.noise_lsb:
            x = x + rng.normal(0.0, board.noise_lsb, n)
        analog.append(np.clip(np.floor(x), 0, top).astype(np.int64))
    lit = []
    t_led = t0 + (k + 4 / 5) * period
    rot = np.exp(1j * (w * t_led + phi))
    for i in range(3):
        p = ph.leds[i] if ph is not None else 0j
        if p and amp_v:
            lit.append(int(np.count_nonzero(amp_v * np.imag(p * rot)
                                            > board.led_threshold_v[i])))
        else:
            lit.append(0)
    return analog, lit


def gains_of(ph: Phasors) -> list[float]:
    """[1, |V(a1)/V(a0)|, ...]: what the probe's gain rows measure (0 for missing channels)."""
    ref = ph.pins[0]
    return [1.0] + [abs(p / ref) if ref else 0.0 for p in ph.pins[1:]]


def levels_of(board: Board, ph: Phasors | None, amp_v: float) -> list[tuple[float, float]]:
    """(bias_v, peak_amplitude_v) for A0..A3."""
    if ph is None:
        return [(board.bias_v, 0.0)] * 4
    return [(board.bias_v, amp_v * abs(p)) for p in ph.pins]


__all__: Sequence[str] = ("Phasors", "board_response", "closed_form_response", "gains_of",
                          "levels_of", "phasors_at", "sample_window", "solver_response")
