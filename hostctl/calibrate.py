"""The bench run: plan -> play -> measure -> record -> fit -> recommend.

:func:`run` joins a connected :class:`~hostctl.device.Probe`, a tone output (real sound card
or the virtual bench) and a session folder. Every reading is recorded before anything else
is done with it, so an interrupted run loses nothing and ``resume=True`` continues it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hostctl import plan
from hostctl.advice import Advice, precision
from hostctl.backtoback import SEND_S, WINDOW_GUARD_S, BackToBack
from hostctl.bench import bench_for
from hostctl.circuits import Circuit, get_circuit
from hostctl.circuits.directives import probe_inputs
from hostctl.dataset import Measurement, MeasurementSet
from hostctl.errors import DeviceError, InputError, ToneRefused
from hostctl.ledrule import EstimateShared
from hostctl.measure import (
    MIN_REF_RMS,
    Floor,
    floor_sigma,
    readings_from,
    reference_ok,
    silent_floor,
)
from hostctl.runconfig import (
    SECOND_LEVEL_DB,
    RunConfig,
    SessionHeader,
)
from hostctl.runresult import RunResult
from hostctl.session import check_identity, probe_identity
from hostctl.sessionfit import (
    Assessment,
    assess,
    fit_session,
    recommend,
)
from hostctl.sessionlog import SESSION_NAME, Recorder, read_session

if TYPE_CHECKING:
    from hostctl.fit import FitResult

CLIP_STEP_DB = 3.0
#: The silent pre-flight window: 0.3 LSB^2 of noise known to ~4 % from 1725 samples
#: (0.13 % on a gain of 0.03, 0.01 % at 0.1; the design's tones read gains of 0.04 and up).
#: Measured on the virtual bench (the 12-tone sweep, seeds 1-30): worst corner error 0.114 %
#: at 300 ms against 0.122 % at 1000 ms, 117/120 intervals covering the truth at both.
FLOOR_WINDOW_MS = 300
#: the pre-flight's reference tone (placed off the probe's bad ratios, then kept as data)
REF_HZ = 1000.0
#: a first silent window that only reads the probe's sample rate, which places the
#: reference before the floor window (rates differ by a percent from the nominal one)
RATE_WINDOW_MS = 20
#: the host's work between the floor's window and the reference's: the floor's noise
#: (hostctl.noise.silence_sigma, 4 x ~12 ms at load 4)
PREP_S = 0.06
#: Flags a repeat would not change (a weak channel): no re-measure for these.
REMEASURE_OK = frozenset({"below-floor"})
#: both mode splits an LED's bracket until the amplitudes at its ends put its threshold
#: within this fraction of the precision (the fitted gains' own uncertainty adds to it)
THRESHOLD_MARGIN = 0.8

Progress = Callable[[int, int, float, float, str], None]


class _Run(BackToBack):
    """State of one calibration; methods are the pipeline's steps."""

    def __init__(self, probe, output, cfg: RunConfig, out_dir: Path, resume: bool,
                 progress: Progress | None, clock: Callable[[], float] | None,
                 segment: Mapping[str, str] | None = None, force: bool = False) -> None:
        self.probe, self.output, self.cfg = probe, output, cfg
        self.circ: Circuit = get_circuit(cfg.circuit)
        #: channel -> the probe input that reads it (the netlist's ``*@ channels``)
        self.inputs = probe_inputs(self.circ.channels, self.circ.probe)
        self.progress = progress
        self.clock = clock or bench_for(probe).clock
        self.t0 = self.idle_since = self.clock()
        self.bench_time = self.host_time = 0.0
        self.missed = 0                       # queued tones the host came too late for
        #: the first batch, queued behind the reference in the pre-flight
        self.queued: list[tuple[plan.Tone, Any]] = []
        self.problems: list[str] = []
        self.level = cfg.level_dbfs
        self.floor = Floor()
        self.ref_rms, self.rate_hz, self.n_samples = 70.0, None, 1000
        #: tones read for their LED bits alone: short windows (plan.LED_WINDOW_MS)
        self.led_bits = False
        path = out_dir / SESSION_NAME
        self.data = MeasurementSet()
        if resume:
            if not path.exists():
                raise InputError("no session to resume here", str(out_dir))
            self.data = read_session(path)
            self.session_path = str(path)
            header = SessionHeader.from_meta(self.data.meta, self.session_path)
            check_identity(header, probe, str(out_dir), force)
            self._restore(header)
            self.rec = Recorder(path, resume=True, rows=len(self.data))
            self.rec.note("resumed", datetime.now(UTC).isoformat(timespec="seconds"))
            for k, v in (segment or {}).items():   # options changed from here on
                self.rec.note(k, v)
            # tones that were never played are still to do
            self.data.rows = [m for m in self.data.rows if "not-played" not in m.flags]
        else:
            out_dir.mkdir(parents=True, exist_ok=True)
            header = SessionHeader(
                cfg, started=datetime.now(UTC).isoformat(timespec="seconds"),
                port=str(getattr(probe, "port", "")), firmware=probe.info.get("fw", "?"),
                protocol=probe.info.get("proto", "?"), probe_identity=probe_identity(probe))
            self.rec = Recorder(path, header.to_meta())
        self.session = str(path)

    def _restore(self, header: SessionHeader) -> None:
        """What the session's pre-flight measured, so resumed rows are measured alike."""
        self.level = header.level
        if header.floor_rms is not None:
            self.floor = Floor(rms=header.floor_rms)
            if header.floor_mean is not None:   # where the DC sits sets the floor's RMS
                self.floor.mean = header.floor_mean
        self.ref_rms, self.rate_hz, self.n_samples = (header.ref_rms, header.rate_hz,
                                                      header.n_samples)
        if not (len(self.floor.rms) == 4 == len(self.floor.mean) and -60 <= self.level <= 0
                and all(math.isfinite(x) and x >= 0 for x in self.floor.rms)):
            raise InputError("session header: floor_rms / level_dbfs_used out of range",
                             self.session_path)
        floor_sigma(self.floor)

    # --- steps -------------------------------------------------------------------------
    def measure(self, freq: float | None, level: float, cued: Any = None) -> Any:
        """Play (or silence; or wait for the tone ``cued`` for it), measure once. The bench
        waited on the host since the last window: its share of the bench time."""
        t = self.clock()
        self.host_time += t - self.idle_since
        if cued is not None:
            self.output.wait(cued)
        elif freq is None:
            self.output.silence()
        else:
            self.output.tone(freq, level)
        return self.read(self.window_ms(freq))

    def read(self, ms: int) -> Any:
        """The probe's MEASURE of ``ms``; the host's time since the last one counted."""
        t = self.clock()
        self.host_time += t - self.idle_since
        res = self.probe.measure(ms)
        self.idle_since = self.clock()
        return res

    def window_ms(self, freq: float | None) -> int:
        """At least 20 cycles of the tone, so a partial cycle cannot bias the RMS. Silence
        (the noise floor) gets at least FLOOR_WINDOW_MS: its scatter would shift every small
        gain of a channel alike for the whole run."""
        if freq is None:
            return max(self.cfg.window_ms, FLOOR_WINDOW_MS)
        return plan.window_ms(freq, self.rate_hz,
                              plan.LED_WINDOW_MS if self.led_bits else self.cfg.window_ms)

    def tone(self, f: float) -> float:
        """A planned frequency as played: rounded, and off the probe's bad ratios."""
        return plan.round_tone(f, self.rate_hz, self.n_samples)

    def preflight(self) -> None:
        """Offsets, noise floor and LED inputs in silence; the reference at 1 kHz.

        An output that queues tones gets the reference cued before the silent window, to
        reach the jack as the window closes, and the first batch (:meth:`first_tones`)
        cued behind it: the bench then never waits on the output's latency. A reference
        that fails a check drops the queue, and is taken alone as before."""
        if "floor_rms" in self.data.meta:
            return
        cue = getattr(self.output, "cue", None)
        floor_ms = self.window_ms(None)
        early, ref_hz = None, None
        if cue is not None:
            self.output.silence()                  # a new output: returns at once
            quick = self.read(RATE_WINDOW_MS)
            self.rate_hz = float(quick.rate_hz) or None
            ref_hz = self.tone(REF_HZ)
            # the first batch is planned now, on this short window's noise (the design only
            # weighs readings by it), so that only the floor's own noise solve is left
            # between the floor's window and the reference's
            self.floor = Floor(rms=tuple(a.rms for a in quick.analog))
            self.n_samples = max(1, round((self.rate_hz or 0) * self.window_ms(ref_hz) / 1000))
            batch = self.first_tones(ref_hz)
            early = cue(ref_hz, self.level, self.hold_s(ref_hz),
                        not_before_s=floor_ms / 1000 + SEND_S + WINDOW_GUARD_S + PREP_S)
            self.led_bits = self.cfg.mode == "led"      # the batch's windows, not the ref's
            self.queued = self.cue_all(batch)
            self.led_bits = False
            res = self.read(floor_ms)
        else:
            res = self.measure(None, self.level)
        self.floor, problems = silent_floor(res, self.probe.info)
        self.problems.extend(problems)
        self.rate_hz = self.rate_hz or float(res.rate_hz) or None
        ref_hz = ref_hz or self.tone(REF_HZ)
        floor_sigma(self.floor)        # solved while the reference passes the output latency
        for _ in range(4):
            res = self.measure_cued(early) if early is not None else None
            info = self.probe.info
            if early is not None and (res is None or not reference_ok(res[0].analog[0], info)):
                self.output.silence()      # the queue behind it is dropped
                self.queued = []
            res = res[0] if res is not None else self.measure(ref_hz, self.level)
            early = None
            ref = res.analog[0]
            if ref.rms < MIN_REF_RMS:                # a sound-card glitch rarely repeats: once more
                res = self.measure(ref_hz, self.level)
                ref = res.analog[0]
            if ref.rms < MIN_REF_RMS:
                raise DeviceError(f"no tone on the reference input A0 (RMS {ref.rms:.1f} counts "
                                  "at 1 kHz): check the sound card cable and {device}"
                                  ).naming(device="the audio device")
            if reference_ok(ref, info):
                break
            self.level -= CLIP_STEP_DB
            self.problems.append(f"reference clipped: level lowered to {self.level:g} dBFS")
        else:
            raise DeviceError("reference A0 clips even 12 dB down: reduce the sound card volume")
        self.ref_rms = res.analog[0].rms
        self.n_samples = res.n
        self.rate_hz = float(res.rate_hz) or None
        notes = SessionHeader(self.cfg, level_dbfs_used=self.level, floor_rms=self.floor.rms,
                              floor_mean=self.floor.mean, ref_rms=self.ref_rms,
                              rate_hz=self.rate_hz, n_samples=self.n_samples).notes()
        for k, v in notes.items():
            self.rec.note(k, v)
        self.record(res, ref_hz, self.level, last=True)   # a reading of every channel: data

    def take(self, freq: float, level: float, attempts: int = 2) -> None:
        """Measure one tone; a reading that fails a sanity check is kept (flagged, never
        fitted) and measured once more, since a glitch rarely repeats."""
        for attempt in range(attempts):
            try:
                res = self.measure(freq, level)
            except (ToneRefused, InputError) as e:
                self.not_played(freq, level, e)
                return
            if self.record(res, freq, level, last=attempt == attempts - 1):
                return

    def not_played(self, freq: float, level: float, why: Exception) -> None:
        """The sound card cannot play this tone: say so in the session, plan around it."""
        rows = [Measurement(freq, ch, level_dbfs=level, flag="not-played")
                for ch in self.circ.channels]
        self.rec.append(rows)
        self.data.extend(rows)
        self.problems.append(f"{freq:g} Hz: not played ({why})")

    def record(self, res: Any, freq: float, level: float, last: bool,
               flag: str = "") -> bool:
        """Record a reading before anything else happens to it; True when it passed every
        check (``flag`` marks one the run knows is spoiled)."""
        rd = readings_from(res, freq, level, self.clock() - self.t0, self.floor,
                           self.probe.info, channels=self.inputs)
        rows = [replace(m, flag="|".join(x for x in (m.flag, flag) if x)) for m in rd.rows]
        self.rec.append(rows)
        self.data.extend(rows)
        for p in rd.problems:
            self.problems.append(f"{freq:g} Hz: {p}")
        suspect = {f for m in rows for f in m.flags} - REMEASURE_OK
        if not suspect:
            self.ref_rms = rd.ref_rms or self.ref_rms
        elif not last:
            self.problems.append(f"{freq:g} Hz: re-measured ({', '.join(sorted(suspect))})")
        return not suspect

    def check_leds_seen(self) -> None:
        """After the sweep every LED input should have gone HIGH at some tone."""
        for ch, k in self.inputs.items():
            rows = [m for m in self.data.rows if m.channel == ch and m.led is not None]
            if rows and not any(m.led for m in rows):
                self.problems.append(f"LED input D{k + 1} ({ch}) never went HIGH during the "
                                     "sweep: check its wiring, or the LED threshold is above "
                                     "the signal (LED mode cannot use it)")

    def tones_done(self) -> set[tuple[float, float]]:
        return {(m.frequency_hz, m.level_dbfs) for m in self.data.rows
                if m.level_dbfs is not None}

    def levels(self) -> list[float]:
        """A second tone level only where it is needed: LED data alone with an unknown
        threshold (in both mode the gains fix |H| and one level gives each LED's)."""
        if not isinstance(self.cfg.led_rule, EstimateShared):
            return [self.level]
        return [self.level, self.level + SECOND_LEVEL_DB]

    def led_sweep(self) -> list[float]:
        """LED mode's first tones: the log sweep, as played."""
        return [self.tone(f) for f in plan.log_sweep(self.cfg.sweep_tones)]

    # --- fitting -----------------------------------------------------------------------
    def fit(self) -> FitResult:
        return fit_session(self.cfg, self.data, self.level)

    # --- the loop ----------------------------------------------------------------------
    def sweep(self) -> None:
        """A designed batch (gain, both) or the LED log sweep (queued in the pre-flight,
        if it could be); then every LED should have lit."""
        self.led_bits = self.cfg.mode == "led"
        if self.queued:
            queued, self.queued = self.queued, []
            self.read_all(queued)
        else:
            done = self.tones_done()
            self.take_all([t for t in self.first_tones() if (t.frequency_hz, t.level_dbfs)
                           not in done])
        self.check_leds_seen()

    def first_tones(self, ref_hz: float | None = None) -> list[plan.Tone]:
        """The sweep's tones. ``ref_hz``: asked before the reference is read (to queue
        them behind it), so it counts as measured; None when the design needs a fit of
        blind tones first (no installed parts known)."""
        if self.cfg.mode == "led":   # at the run's level: refine_led plays the second's
            return [plan.Tone(f, self.level) for f in self.led_sweep()]
        if ref_hz is not None and set(self.cfg.installed) != set(self.circ.resistors):
            return []
        return [plan.Tone(f, self.level) for f in self.gain_design([ref_hz] if ref_hz else [])]

    def gain_design(self, ahead: list[float]) -> list[float]:
        """The gain tones by expected information (:mod:`hostctl.gaindesign`) for the
        installed parts; with none known, after the fewest tones that bracket any corner.
        ``ahead``: tones about to be measured, as if done."""
        from hostctl import gaindesign

        values: Mapping[str, float] = dict(self.cfg.installed)
        if set(values) != set(self.circ.resistors):
            blind = [self.tone(f) for f in plan.log_sweep(gaindesign.BLIND_TONES)]
            self.take_all([plan.Tone(f, self.level) for f in blind
                           if (f, self.level) not in self.tones_done()])
            values = self.fit().values
        return gaindesign.for_run(self.circ, self.cfg, values, self.floor.rms, self.ref_rms,
                                  self.rate_hz, [f for f, lvl in self.tones_done()
                                                 if lvl == self.level] + ahead, self.tone)

    def n_tones(self) -> int:
        return len(self.tones_done())

    def report_progress(self, f: float, fit: FitResult | None = None,
                        worst: float = math.nan, name: str = "") -> None:
        if self.progress is None:
            return
        if fit is not None:
            prec = precision(fit)
            name = max(prec, key=lambda k: prec[k])
            worst = prec[name]
        self.progress(self.n_tones(), self.cfg.tone_budget, f, worst, name)

    def refine(self) -> FitResult:
        """Add tones until the precision is reached or the budget is spent."""
        if self.cfg.mode == "led":
            return self.refine_led()
        cfg = self.cfg
        result = self.fit()
        while self.n_tones() < cfg.tone_budget:
            prec = precision(result)
            wanted = [r for r, p in prec.items() if not p <= cfg.precision]
            if not wanted:
                break
            tone = self.next_gain_tone(result, wanted)
            if tone is None:
                break
            self.take(tone.frequency_hz, tone.level_dbfs)
            result = self.fit()
            self.report_progress(tone.frequency_hz, result)
        if result.led_thresholds_ci95:
            result = self.refine_thresholds(result)
        return result

    def refine_thresholds(self, result: FitResult) -> FitResult:
        """Both mode: split LED switches until each LED's threshold is known to the precision
        (the recommendation's LED bands depend on it as much as on the parts). The splits
        go back to back (:meth:`split_switches`) while the bracket's amplitudes say the
        LED is unsure; a fit then judges, and another pass follows for any still unsure."""
        self.led_bits = True
        margin = THRESHOLD_MARGIN
        while self.n_tones() < self.cfg.tone_budget and result.led_thresholds_ci95:
            wide = {ch: (0.5 * math.log(hi / lo) if lo > 0 and math.isfinite(hi) else math.inf)
                    for ch, (lo, hi) in result.led_thresholds_ci95.items()}
            todo = [ch for ch, w in wide.items() if not w <= self.cfg.precision]
            if not todo or not self.split_switches(todo, margin * self.cfg.precision):
                break
            result = self.fit()
            margin *= 0.7               # the fit disagreed with the amplitudes: aim closer
        return result

    def refine_led(self) -> FitResult:
        """Split LED brackets in rounds (an estimated threshold's second level joins them:
        :func:`plan.second_level_tones`); the brackets alone say where to go. A fit to stop
        early only with the threshold given, when the tones have doubled: an estimated
        one's range kept every bench run short of it (seeds 1-20), and its profile costs 1 s.

        A bracket of log-width w pins a first-order corner to about w/2; with the
        threshold estimated from two levels its error adds in, hence the tighter margin.
        """
        estimated = bool(self.levels()[1:])
        margin = 0.45 if estimated else 0.6
        check_at = math.inf if estimated else self.n_tones()
        while self.n_tones() < self.cfg.tone_budget:
            if self.n_tones() >= check_at:
                check_at = 2 * self.n_tones()
                prec = precision(self.fit())
                if all(p <= self.cfg.precision for p in prec.values()):
                    break
            done, width = self.tones_done(), self.cfg.precision * margin
            second = (plan.second_level_tones(self.data.rows, *self.levels(), self.led_sweep())
                      if estimated else [])
            tones = [t for t in dict.fromkeys(second + plan.next_led_tones(
                self.data.rows, width, self.tone, past_ends=estimated))
                if (t.frequency_hz, t.level_dbfs) not in done]
            if not tones:
                break
            self.take_all(tones[:self.cfg.tone_budget - self.n_tones()])
            widths = {f"{b.channel}@{b.level_dbfs:g}": b.log_width / 2
                      for b in plan.led_brackets(self.data.rows)}
            name = max(widths, key=lambda k: widths[k]) if widths else ""
            self.report_progress(tones[-1].frequency_hz, worst=widths.get(name, math.nan),
                                 name=name)
        return self.fit()

    def next_gain_tone(self, result: FitResult, wanted: list[str]) -> plan.Tone | None:
        done = self.tones_done()
        freqs = [f for f, lvl in done if lvl == self.level]
        noise = max(max(self.floor.rms[1:], default=0.5), 0.3)
        f = self.tone(plan.next_gain_tone(
            self.circ, result.values, self.cfg.capacitance, freqs, wanted,
            self.ref_rms, noise, self.n_samples))
        if (f, self.level) in done:
            return None
        return plan.Tone(f, self.level)

    def close(self) -> None:
        """Silence; the run's bench time is all of it, to the last fit."""
        self.host_time += self.clock() - self.idle_since
        self.rec.close()
        try:   # an output that schedules fades out while the run fits: nothing to wait for
            if hasattr(self.output, "cue"):
                self.output.silence(wait=False)
            else:
                self.output.silence()
        except Exception:  # noqa: BLE001 - silence is best effort once the run is over
            pass
        self.bench_time = self.clock() - self.t0


def run(probe, output, cfg: RunConfig, out_dir: str | Path, *, resume: bool = False,
        progress: Progress | None = None, clock: Callable[[], float] | None = None,
        segment: Mapping[str, str] | None = None, force: bool = False) -> RunResult:
    """One calibration: returns the result; the session file holds every reading.

    The phases run in order over one run state (:class:`_Run`): on the bench
    preflight -> sweep -> refine (every reading recorded as it arrives), then from the
    data alone assess -> recommend -> report_run (the same functions re-fit a session offline).
    On resume, ``segment`` holds the options changed from now on (noted in the header) and
    ``force`` accepts a probe other than the session's."""
    cfg.check()
    wall0 = time.monotonic()
    r = _Run(probe, output, cfg, Path(out_dir), resume, progress, clock, segment, force)
    try:
        r.preflight()
        r.sweep()
        result = r.refine()
    finally:
        r.close()
    judged = assess(cfg, r.data, result, r.level)
    r.problems.extend(judged.notes)
    adv = recommend(cfg, result, judged)
    r.problems.extend(adv.problems)
    return report_run(r, result, judged, adv, time.monotonic() - wall0)


def report_run(r: _Run, result: FitResult, judged: Assessment, adv: Advice, wall_s: float
           ) -> RunResult:
    """The run's result: what was measured (the rows themselves), fitted and recommended."""
    prec = precision(result)
    unmet = [k for k, v in prec.items() if not v <= r.cfg.precision]
    return RunResult(
        fit=result, design=adv.design, tones=r.n_tones(), bench_time_s=r.bench_time,
        host_time_s=r.host_time, missed_slots=r.missed,
        wall_time_s=wall_s, precision_reached=prec, unmet=unmet,
        threshold=judged.threshold, threshold_source=judged.source,
        actual_capacitance=adv.capacitance, capacitance_source=adv.capacitance_source,
        led_map=adv.led_map, bands=adv.bands, passed=adv.passed, problems=r.problems,
        session=r.session, config=r.cfg, probe_info=dict(r.probe.info), data=r.data,
        advice=adv)
