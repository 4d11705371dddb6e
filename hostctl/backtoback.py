"""Tones back to back: a batch queued on the output at once, each read in its slot.

A tone known ahead is cued (``audio`` ``cue``/``wait``) to start where the one before ends
its window, so the output latency is paid once for the batch, not once per tone. A slot the
host came too late for is taken again alone (``missed_slots``); a reply that arrived after
the next tone began is kept flagged ``tone-changed``, never fitted. LED switches are split
the same way (:meth:`BackToBack.split_switches`): as each reading arrives, that LED's next
split is queued behind the other LEDs' tones, so the queue does not run dry between splits.

:class:`BackToBack` is the run state's (``calibrate._Run``) share of this: it uses the run's
output, probe, clock, recorder (``record``, ``take``, ``not_played``) and window rule.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from hostctl import plan
from hostctl.errors import InputError, ToneRefused

#: a queued tone holds its window and this much more before the next one starts: room for
#: the MEASURE line to reach the probe (SEND_S) and for the host to send it up to 20 ms late
#: (later, the tone is taken again alone: missed_slots)
WINDOW_GUARD_S = 0.025
SEND_S = 0.005
#: a MEASURE reply is 100+ bytes: at 115200 baud its window ended at least this long before
#: the reply was in (PROTOCOL.md)
REPLY_S = 100 * 10 / 115200


class BackToBack:
    """Queue, read and retake tones planned together (mixed into ``calibrate._Run``)."""

    def hold_s(self, freq: float) -> float:
        """How long a queued tone holds after it settles: its window and a guard."""
        return self.window_ms(freq) / 1000 + WINDOW_GUARD_S

    def take_all(self, tones: list[plan.Tone]) -> None:
        """Tones planned together play back to back: each is queued to start once the one
        before has held for its window, so the output latency is paid once, not per tone.
        A tone whose slot the host missed, or whose reading fails a check, is taken again
        alone afterwards."""
        if not hasattr(self.output, "cue"):
            for t in tones:
                self.take(t.frequency_hz, t.level_dbfs)
                self.report_progress(t.frequency_hz)
            return
        self.read_all(self.cue_all(tones))

    def cue_all(self, tones: list[plan.Tone]) -> list[tuple[plan.Tone, Any]]:
        """Queue tones back to back on the output; the ones it refuses are noted."""
        queued = []
        for t in tones:
            try:
                queued.append((t, self.output.cue(t.frequency_hz, t.level_dbfs,
                                                  self.hold_s(t.frequency_hz))))
            except (ToneRefused, InputError) as e:
                self.not_played(t.frequency_hz, t.level_dbfs, e)
        return queued

    def read_all(self, queued: list[tuple[plan.Tone, Any]]) -> None:
        """Measure each queued tone in its slot (:meth:`take_all`)."""
        again = [t for t, cue in queued if self.read_cued(t, cue) is False]
        for t in again:
            self.take(t.frequency_hz, t.level_dbfs, attempts=1)

    def read_cued(self, t: plan.Tone, cue: Any) -> bool | None:
        """Read one queued tone and record it: True when it passed every check, False when
        it should be taken again (its slot missed, or a check failed), None when the output
        refused it."""
        try:
            got = self.measure_cued(cue)
        except (ToneRefused, InputError) as e:
            self.not_played(t.frequency_hz, t.level_dbfs, e)
            return None
        self.report_progress(t.frequency_hz)
        if got is None:
            self.missed += 1             # the host was late: a cost, not a problem
            return False
        return self.record(got[0], t.frequency_hz, t.level_dbfs, False, got[1])

    def measure_cued(self, cue: Any) -> tuple[Any, str] | None:
        """Wait for a cued tone and measure it if its hold leaves room for the window (None:
        the host came too late). A reply that comes after the hold ended may have seen the
        next tone's fade: flagged ``tone-changed``, never fitted."""
        t = self.clock()
        self.host_time += t - self.idle_since
        self.output.wait(cue)
        ms = self.window_ms(cue.freq_hz)
        if cue.left_s() < ms / 1000 + SEND_S:
            self.idle_since = self.clock()
            return None
        res = self.probe.measure(ms)
        self.idle_since = self.clock()
        return res, ("tone-changed" if cue.left_s() < -REPLY_S else "")

    def split_switches(self, channels: list[str], half_width: float) -> int:
        """Split each channel's widest LED bracket tone after tone until the amplitudes at
        its ends differ by less than ``2 * half_width`` (log): a tone for every channel is
        queued, and as each is read its channel's next one is queued behind the rest, so
        while two or more channels are open the queue never runs dry and the output
        latency is paid once, not once per split. Returns the tones played."""
        played, tries = 0, {}
        queue: deque[tuple[str, plan.Tone, Any]] = deque()

        def feed(ch: str) -> None:
            if self.n_tones() + len(queue) >= self.cfg.tone_budget:
                return
            rows = [m for m in self.data.rows if m.channel == ch]
            b = plan.widest_bracket(rows)
            if b is None or not plan.amplitude_width(b, rows) > 2 * half_width:
                return
            t = plan.next_led_tone(rows, 1e-4, self.tone, b)
            if t is None or tries.get(t, 0) >= 2:
                return
            tries[t] = tries.get(t, 0) + 1
            if not hasattr(self.output, "cue"):
                queue.append((ch, t, None))
                return
            try:
                queue.append((ch, t, self.output.cue(t.frequency_hz, t.level_dbfs,
                                                      self.hold_s(t.frequency_hz))))
            except (ToneRefused, InputError) as e:
                self.not_played(t.frequency_hz, t.level_dbfs, e)

        for ch in channels:
            feed(ch)
        while queue:
            ch, t, cue = queue.popleft()
            if cue is None:
                self.take(t.frequency_hz, t.level_dbfs)
            else:
                self.read_cued(t, cue)
            played += 1
            feed(ch)
        return played
