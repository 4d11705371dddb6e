"""The run's configuration, typed and checked below the CLI, and its session-header form.

A calibration's settings are one :class:`RunConfig`: the CLI parses strings into it, the
session header records it (:meth:`RunConfig.to_meta`) and :func:`config_from_meta` reads it
back for ``--resume``, ``hostctl fit SESSION`` and ``hostctl report``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

from hostctl import plan
from hostctl.advice import target_from_meta, target_to_meta
from hostctl.circuits import capacitances, get_circuit
from hostctl.errors import InputError
from hostctl.target import Target, default_target
from hostctl.values import (
    check_capacitance,
    check_per_led,
    format_per_led,
    parse_capacitance,
    parse_per_led,
    parse_values,
)

MODES = ("gain", "led", "both")
DEFAULT_MAX_TONES = {"gain": 40, "led": 80, "both": 60}
SWEEP_TONES = 12
#: LED mode without a known threshold measures at a second level this many dB lower.
SECOND_LEVEL_DB = -2.0
#: RunConfig field -> (option, open range, unit) of the values given one or per LED
PER_LED_LIMITS = {"led_threshold": ("--led-threshold", 0, 1, ""),
                  "led_vf": ("--led-vf", 0, 5, " V")}


@dataclass
class RunConfig:
    """A calibration's settings, checked together (:meth:`check`) before a tone plays."""

    circuit: str = "color-organ"
    mode: str = "gain"
    precision: float = 0.01            # relative half-width of each 95% interval
    max_tones: int | None = None
    series: str = "E24"
    target: Target = field(default_factory=default_target)
    installed: dict[str, float] = field(default_factory=dict)
    capacitance: float | dict[str, float] = 1e-6
    level_dbfs: float = -6.0
    window_ms: int = 200
    #: on |H| at level_dbfs, one for all LEDs or per channel; None: measure it
    led_threshold: float | dict[str, float] | None = None
    #: volts (one, or per channel): threshold from the measured reference amplitude
    led_vf: float | dict[str, float] | None = None
    sweep_tones: int = SWEEP_TONES
    #: the bench the run used (audio device, rate, settle): recorded so --resume reuses it
    bench_meta: dict[str, str] = field(default_factory=dict)

    def check(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode '{self.mode}' (known: {', '.join(MODES)})")
        get_circuit(self.circuit)
        if not (0 < self.precision < 1):
            raise InputError(f"precision must be between 0 and 100%, got {self.precision}")
        if self.max_tones is not None and self.max_tones < self.sweep_tones:
            raise InputError(f"--max-tones must be at least {self.sweep_tones} "
                             "(the initial sweep)")
        from hostctl.recommend import series_info

        series_info(self.series)
        if not (10 <= self.window_ms <= 5000):
            raise InputError(f"window {self.window_ms} ms is outside 10..5000")
        if self.max_tones is not None and self.max_tones > 10_000:
            raise InputError(f"--max-tones {self.max_tones} is more than 10000")
        if not (-60 <= self.level_dbfs <= 0):
            raise InputError(f"level {self.level_dbfs} dBFS is outside -60..0")
        circ = get_circuit(self.circuit)
        for key, (option, lo, hi, unit) in PER_LED_LIMITS.items():
            check_per_led(getattr(self, key), option, lo, hi, unit, circ)
        for k, v in self.installed.items():
            if k not in circ.resistors:
                raise InputError(f"--installed: '{k}' is not a resistor of {circ.name} "
                                 f"({', '.join(circ.resistors)})")
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"--installed: {k} must be positive")
        check_capacitance(self.capacitance, circ)
        capacitances(circ, self.capacitance)
        self.target.check(circ, plan.BAND)

    @property
    def tone_budget(self) -> int:
        return self.max_tones or DEFAULT_MAX_TONES[self.mode]

    def to_meta(self) -> dict[str, str]:
        caps = self.capacitance
        return {
            "circuit": self.circuit, "mode": self.mode,
            "capacitance": (",".join(f"{k}={v}" for k, v in caps.items())
                            if isinstance(caps, dict) else repr(caps)),
            "installed": ",".join(f"{k}={v}" for k, v in self.installed.items()),
            "level_dbfs": repr(self.level_dbfs), "window_ms": str(self.window_ms),
            "precision": repr(self.precision), "max_tones": str(self.tone_budget),
            "series": self.series, **self.target.meta(),
            "target_spec": target_to_meta(self.target),
            "led_threshold": format_per_led(self.led_threshold),
            "led_vf": format_per_led(self.led_vf),
            **self.bench_meta,
        }


def config_from_meta(meta: Mapping[str, str], base: RunConfig) -> RunConfig:
    """The run's settings as recorded in a session header (for --resume)."""
    cfg = base
    cfg.circuit = meta.get("circuit", cfg.circuit)
    cfg.mode = meta.get("mode", cfg.mode)
    if meta.get("capacitance"):
        cfg.capacitance = parse_capacitance(meta["capacitance"])
    if meta.get("installed"):
        cfg.installed = parse_values(meta["installed"], "installed")
    for key, (_, lo, hi, unit) in PER_LED_LIMITS.items():
        if meta.get(key):
            what = f"session header '{key}'"
            setattr(cfg, key, parse_per_led(meta[key], what))
            check_per_led(getattr(cfg, key), what, lo, hi, unit, get_circuit(cfg.circuit))
    convs = (("level_dbfs", float), ("window_ms", int), ("precision", float),
             ("max_tones", int))
    for key, conv in convs:
        if meta.get(key):
            try:
                setattr(cfg, key, conv(meta[key]))
            except ValueError:
                raise InputError(f"session header: '{key}' is '{meta[key]}', not a "
                                 f"{'whole ' if conv is int else ''}number") from None
    cfg.series = meta.get("series", cfg.series)
    tgt = target_from_meta(meta)
    if tgt is not None:
        cfg.target = tgt
    return cfg
