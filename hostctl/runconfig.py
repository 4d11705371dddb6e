"""The run's configuration, typed and checked below the CLI, and its session header.

A calibration's settings are one frozen :class:`RunConfig`: the CLI parses strings into it,
:func:`with_board` lets a bench's own board fill in what the user did not give, and nothing
changes it afterwards. A session file's ``# key: value`` lines are one
:class:`SessionHeader`, written when the session starts (:meth:`SessionHeader.to_meta`) and
read back in one place (:meth:`SessionHeader.from_meta`) for ``--resume``, ``hostctl fit
SESSION`` and ``hostctl report``: the text form (keys, formatting) is the session schema.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from typing import Any

from hostctl import plan
from hostctl.advice import target_from_meta, target_to_meta
from hostctl.circuits import capacitances, get_circuit
from hostctl.errors import InputError
from hostctl.ledrule import LedRule, for_run
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
#: the widest capacitor tolerance a verdict may be asked to hold over
MAX_CAP_TOL = 0.5
#: RunConfig field -> (option, open range, unit) of the values given one or per LED
PER_LED_LIMITS = {"led_threshold": ("{led_threshold}", 0, 1, ""),
                  "led_vf": ("{led_vf}", 0, 5, " V")}


@dataclass(frozen=True)
class BenchSettings:
    """The audio path a run used, recorded so ``--resume`` plays through the same one."""

    audio_device: str | None = None
    audio_rate: int | None = None
    settle_s: float | None = None

    def to_meta(self) -> dict[str, str]:
        return {"audio_device": "" if self.audio_device is None else str(self.audio_device),
                "audio_rate": "" if self.audio_rate is None else str(self.audio_rate),
                "settle_s": "" if self.settle_s is None else repr(self.settle_s)}


@dataclass(frozen=True)
class RunConfig:
    """A calibration's settings. What needs no circuit is checked when it is made; what
    depends on the circuit (channels, resistor names) by :meth:`check`, once the circuit
    is known (a virtual bench's board may name it)."""

    circuit: str = "color-organ"
    mode: str = "gain"
    precision: float = 0.01            # relative half-width of each 95% interval
    max_tones: int | None = None
    series: str = "E24"
    target: Target = field(default_factory=default_target)
    installed: Mapping[str, float] = field(default_factory=dict)
    capacitance: float | Mapping[str, float] = 1e-6
    level_dbfs: float = -6.0
    window_ms: int = 200
    #: on |H| at level_dbfs, one for all LEDs or per channel; None: measure it
    led_threshold: float | Mapping[str, float] | None = None
    #: volts (one, or per channel): threshold from the measured reference amplitude
    led_vf: float | Mapping[str, float] | None = None
    sweep_tones: int = SWEEP_TONES
    #: the bench the run used (audio device, rate, settle): recorded so --resume reuses it
    bench: BenchSettings | None = None
    #: what the verdict allows each capacitor (fraction; None: hostctl.robust's default)
    cap_tolerance: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise InputError(f"unknown mode '{self.mode}' (known: {', '.join(MODES)})")
        if not (0 < self.precision < 1):
            raise InputError(f"precision must be between 0 and 100%, got {self.precision}")
        if self.max_tones is not None and self.max_tones < self.sweep_tones:
            raise InputError(f"{{max_tones}} must be at least {self.sweep_tones} "
                             "(the initial sweep)").naming(max_tones="the tone budget")
        from hostctl.recommend import series_info

        series_info(self.series)
        if not (10 <= self.window_ms <= 5000):
            raise InputError(f"window {self.window_ms} ms is outside 10..5000")
        if self.max_tones is not None and self.max_tones > 10_000:
            raise InputError(f"{{max_tones}} {self.max_tones} is more than 10000"
                             ).naming(max_tones="the tone budget")
        if not (-60 <= self.level_dbfs <= 0):
            raise InputError(f"level {self.level_dbfs} dBFS is outside -60..0")

    def check(self) -> None:
        """The settings against the circuit: its resistors, capacitors, channels, band."""
        circ = get_circuit(self.circuit)
        for key, (option, lo, hi, unit) in PER_LED_LIMITS.items():
            check_per_led(getattr(self, key), option, lo, hi, unit, circ)
        for k, v in self.installed.items():
            if k not in circ.resistors:
                raise InputError(f"{{installed}}: '{k}' is not a resistor of {circ.name} "
                                 f"({', '.join(circ.resistors)})").naming()
            if not (math.isfinite(v) and v > 0):
                raise InputError(f"{{installed}}: {k} must be positive").naming()
        check_capacitance(self.capacitance, circ)
        capacitances(circ, self.capacitance)
        self.target.check(circ, plan.BAND)
        if self.cap_tolerance is not None and not 0 <= self.cap_tolerance <= MAX_CAP_TOL:
            raise InputError(f"capacitor tolerance {self.cap_tolerance:.0%} is outside "
                             f"0..{MAX_CAP_TOL:.0%}")

    @property
    def led_rule(self) -> LedRule:
        """How this run knows when an LED lights (:mod:`hostctl.ledrule`)."""
        return for_run(self.led_threshold, self.led_vf, self.mode)

    @property
    def tone_budget(self) -> int:
        return self.max_tones or DEFAULT_MAX_TONES[self.mode]

    def to_meta(self) -> dict[str, str]:
        """The settings' lines of the session header (the session schema: keep the text)."""
        caps = self.capacitance
        return {
            "circuit": self.circuit, "mode": self.mode,
            "capacitance": (",".join(f"{k}={v}" for k, v in caps.items())
                            if isinstance(caps, Mapping) else repr(caps)),
            "installed": ",".join(f"{k}={v}" for k, v in self.installed.items()),
            "level_dbfs": repr(self.level_dbfs), "window_ms": str(self.window_ms),
            "precision": repr(self.precision), "max_tones": str(self.tone_budget),
            "series": self.series, **self.target.meta(),
            "target_spec": target_to_meta(self.target),
            "led_threshold": format_per_led(_plain(self.led_threshold)),
            "led_vf": format_per_led(_plain(self.led_vf)),
            **(self.bench.to_meta() if self.bench is not None else {}),
            # only when given: a session without it is judged with the default box
            **({} if self.cap_tolerance is None else {"cap_tolerance": repr(self.cap_tolerance)}),
        }


def _plain(v: Any) -> Any:
    return dict(v) if isinstance(v, Mapping) else v


def with_board(cfg: RunConfig, board: Any, *, circuit_given: bool,
               capacitance_given: bool) -> RunConfig:
    """A bench's own board fills in what the user did not give: its circuit, and its parts
    for the sections that circuit has (the one place board defaults enter a config)."""
    if board is None:
        return cfg
    circuit = cfg.circuit if circuit_given else board.circuit
    mine = set(get_circuit(circuit).resistors)
    changes: dict[str, Any] = {"circuit": circuit}
    if not cfg.installed:
        changes["installed"] = {k: v for k, v in board.resistors.items() if k in mine}
    if not capacitance_given:
        changes["capacitance"] = {k: v for k, v in board.capacitance_f.items() if k in mine}
    return replace(cfg, **changes)


def config_from_meta(meta: Mapping[str, str], base: RunConfig | None = None,
                     where: str | None = None) -> RunConfig:
    """The run's settings as recorded in a session header (see :class:`SessionHeader`)."""
    base = base or RunConfig()
    kw: dict[str, Any] = {f.name: getattr(base, f.name) for f in fields(RunConfig)}
    kw["circuit"] = meta.get("circuit", base.circuit)
    kw["mode"] = meta.get("mode", base.mode)
    if meta.get("capacitance"):
        kw["capacitance"] = parse_capacitance(meta["capacitance"])
    if meta.get("installed"):
        kw["installed"] = parse_values(meta["installed"], "installed")
    for key, (_, lo, hi, unit) in PER_LED_LIMITS.items():
        if meta.get(key):
            what = f"session header '{key}'"
            kw[key] = parse_per_led(meta[key], what)
            check_per_led(kw[key], what, lo, hi, unit, get_circuit(kw["circuit"]))
    convs = (("level_dbfs", float), ("window_ms", int), ("precision", float),
             ("max_tones", int), ("cap_tolerance", float))
    for key, conv in convs:
        if meta.get(key):
            kw[key] = _number(meta, key, conv)
    kw["series"] = meta.get("series", base.series)
    kw["target"] = target_from_meta(meta) or base.target
    if "audio_device" in meta or "audio_rate" in meta or "settle_s" in meta:
        kw["bench"] = _bench_from_meta(meta, where)
    return RunConfig(**kw)


def _number(meta: Mapping[str, str], key: str, conv: type) -> Any:
    try:
        return conv(meta[key])
    except ValueError:
        raise InputError(f"session header: '{key}' is '{meta[key]}', not a "
                         f"{'whole ' if conv is int else ''}number") from None


def _bench_from_meta(meta: Mapping[str, str], where: str | None) -> BenchSettings:
    try:
        rate = int(meta["audio_rate"]) if meta.get("audio_rate") else None
        settle = float(meta["settle_s"]) if meta.get("settle_s") else None
    except ValueError as e:
        raise InputError(f"session header: bad audio_rate/settle_s ({e})", where) from None
    return BenchSettings(audio_device=meta.get("audio_device") or None, audio_rate=rate,
                         settle_s=settle)


#: header keys the run notes after its pre-flight (what resuming needs to measure alike)
NOTE_KEYS = ("floor_rms", "floor_mean", "level_dbfs_used", "ref_rms", "rate_hz", "n_samples")


@dataclass(frozen=True)
class SessionHeader:
    """A session's ``# key: value`` lines, typed. The session starts with :meth:`to_meta`
    (who recorded it, then the settings); the pre-flight adds its notes (:meth:`notes`);
    a resume may add a segment of changed settings. Readers merge them, later lines winning,
    and :meth:`from_meta` reads the result once."""

    config: RunConfig
    started: str = ""
    port: str = ""
    firmware: str | None = None
    protocol: str | None = None
    #: what tells two probes apart (None: an old session that did not record it)
    probe_identity: str | None = None
    #: the level the run actually played at (the pre-flight lowers it on clipping)
    level_dbfs_used: float | None = None
    floor_rms: tuple[float, ...] | None = None
    floor_mean: tuple[float, ...] | None = None
    ref_rms: float = 70.0
    rate_hz: float | None = None
    n_samples: int = 1000
    #: the text as read (a message quotes what the file says; the target's file and hash)
    text: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def level(self) -> float:
        """The level the rows were measured at."""
        return self.config.level_dbfs if self.level_dbfs_used is None else self.level_dbfs_used

    def to_meta(self) -> dict[str, str]:
        """A new session's first lines (``format`` is the session file's own)."""
        return {"started": self.started, "port": self.port, "firmware": self.firmware or "?",
                "protocol": self.protocol or "?", "probe_identity": self.probe_identity or "",
                **self.config.to_meta()}

    def notes(self) -> dict[str, str]:
        """The pre-flight's lines, in the order the run writes them."""
        out: dict[str, str] = {}
        if self.floor_rms is not None:
            out["floor_rms"] = ",".join(f"{a:.4f}" for a in self.floor_rms)
        if self.floor_mean is not None:
            out["floor_mean"] = ",".join(f"{a:.4f}" for a in self.floor_mean)
        if self.level_dbfs_used is not None:
            out["level_dbfs_used"] = repr(self.level_dbfs_used)
        out["ref_rms"] = f"{self.ref_rms:.3f}"
        out["rate_hz"] = str(self.rate_hz_text)
        out["n_samples"] = str(self.n_samples)
        return out

    @property
    def rate_hz_text(self) -> str:
        r = self.rate_hz or 0
        return str(int(r)) if float(r).is_integer() else str(r)

    @classmethod
    def from_meta(cls, meta: Mapping[str, str], where: str = "",
                  base: RunConfig | None = None) -> SessionHeader:
        """The header of a session as read (``where``: the file, for messages)."""
        cfg = config_from_meta(meta, base, where or None)
        try:
            notes = _notes_from_meta(meta)
        except (ValueError, TypeError) as e:
            raise InputError(f"bad run note in the session header ({e}): fix or delete that "
                             "'# key: value' line", where) from None
        return cls(config=cfg, started=meta.get("started", ""), port=meta.get("port", ""),
                   firmware=meta.get("firmware"), protocol=meta.get("protocol"),
                   probe_identity=meta.get("probe_identity"), text=dict(meta), **notes)


def _notes_from_meta(meta: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "level_dbfs_used" in meta:
        out["level_dbfs_used"] = float(meta["level_dbfs_used"])
    for key in ("floor_rms", "floor_mean"):
        if key in meta:
            out[key] = tuple(float(x) for x in meta[key].split(","))
    out["ref_rms"] = float(meta.get("ref_rms", 70.0))
    out["rate_hz"] = float(meta.get("rate_hz", 0.0)) or None
    out["n_samples"] = int(meta.get("n_samples", 1000))
    return out
