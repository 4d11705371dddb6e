"""What one calibration gives: the fit, the parts, the bench's time, the rows measured.

:func:`hostctl.calibrate.run` returns it, :mod:`hostctl.report` writes it (table, report.json,
bode.png) and ``hostctl report`` rebuilds it from a session: one type for all three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hostctl.advice import Advice, fit_json
from hostctl.circuits import Threshold
from hostctl.dataset import MeasurementSet
from hostctl.recommend import Design
from hostctl.runconfig import RunConfig

if TYPE_CHECKING:
    from hostctl.fit import FitResult

REPORT_SCHEMA = "hostctl-report/2"


@dataclass
class RunResult:
    fit: FitResult
    design: Design
    tones: int
    bench_time_s: float                # the run on the bench's clock, the host's share included
    wall_time_s: float
    precision_reached: dict[str, float]
    unmet: list[str]
    threshold: Threshold               # on |H| at the run's level; per channel or one
    threshold_source: str
    actual_capacitance: dict[str, float]
    capacitance_source: str
    led_map: dict[str, list[tuple[float, float]]]
    bands: dict[str, dict]
    passed: bool
    problems: list[str]
    session: str
    config: RunConfig
    probe_info: dict[str, str]
    #: the rows the fit saw (the plot draws them: nothing is re-read from the session file)
    data: MeasurementSet
    advice: Advice | None = None
    #: versions, command line, audio device, probe, host (hostctl.provenance)
    provenance: dict[str, Any] | None = None
    #: of bench_time_s, what the bench waited on the host between windows (fits, planning)
    host_time_s: float = 0.0
    #: queued tones the host came too late to measure in their slot (taken again alone)
    missed_slots: int = 0

    def to_json(self) -> dict[str, Any]:
        out = {
            "schema": REPORT_SCHEMA,
            "circuit": self.fit.circuit,
            "mode": self.config.mode,
            "probe": self.probe_info,
            "fit": fit_json(self.fit),
            "run": {"tones": self.tones, "bench_time_s": self.bench_time_s,
                    "host_time_s": self.host_time_s, "wall_time_s": self.wall_time_s,
                    "missed_slots": self.missed_slots,
                    "precision_asked": self.config.precision,
                    "precision_reached": self.precision_reached,
                    "precision_unmet": self.unmet, "session": self.session,
                    "problems": self.problems},
            "led_threshold": {"value": self.threshold, "source": self.threshold_source,
                              "level_dbfs": self.config.level_dbfs},
            "capacitance": {"value_f": self.actual_capacitance,
                            "source": self.capacitance_source},
            "recommended": self.design.to_json(),
            "target": self.config.target.to_json(),
            "predicted_led_bands_hz": {k: [list(b) for b in v] for k, v in self.led_map.items()},
            "target_check": self.bands,
            "pass": self.passed,
        }
        if self.advice is not None:   # the same blocks `hostctl fit --json` prints
            out.update(self.advice.to_json())
            out["led_threshold"]["level_dbfs"] = self.config.level_dbfs
        if self.provenance is not None:
            out["provenance"] = self.provenance
        return out
