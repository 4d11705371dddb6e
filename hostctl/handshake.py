"""Meeting the probe: HELLO until answered, through a boot, a bootloader and a noisy line.

Opening a Uno resets it (DTR) and its bootloader needs ~1-2 s, so HELLO is re-sent every
``HELLO_INTERVAL_S`` until a reply or the ``! BOOT`` banner - never a fixed sleep. When
nothing sensible comes back, the failure says whether it was silence, line noise, an echo,
another protocol version or not a probe at all.
"""

from __future__ import annotations

from hostctl.errors import DeviceError, DeviceTimeout, LineNoise
from hostctl.link import LineLink

#: Protocol versions this host speaks (HELLO <min> <max>).
PROTO_MIN = 1
PROTO_MAX = 1
#: How often HELLO is re-sent while waiting for the board to boot.
HELLO_INTERVAL_S = 0.5
#: After a boot banner, how long a HELLO already in flight may take to be answered.
BANNER_GRACE_S = 0.05
#: Extra tries for a command or reply damaged on the way (bad CRC): on a noisy line a
#: 170-byte MEASURE reply fails often, and every retry is a fresh chance.
NOISE_RETRIES = 30
#: ERR codes that are the probe's answer when repeated, line damage when not.
_ANSWER_ERRS = {1, 5}
#: Identical ERR replies in a row (with good CRCs) that make an answer, not noise.
CONFIRM_ERRS = 3


class Handshake(LineLink):
    """The HELLO exchange; the probe's ``_transact`` reads the version on a mismatch."""

    info: dict[str, str]
    boot_banner: dict[str, str] | None
    timeout_s: float

    def _handshake(self, boot_timeout_s: float) -> None:
        """HELLO until answered; on ERR 6 ask ID so the message can name both versions."""
        start = self._clock()
        deadline = start + boot_timeout_s
        hello_ids: set[int] = set()
        next_hello = start
        junk_before = self._junk_count()
        crc_before = self.stats["crc_errors"]
        echoes_before = self.stats["echoes"]
        rx_before = self._rx_bytes
        saw_protocol = False
        sample: bytes | None = None
        noise = {"hellos": 0, "damaged": 0, "errs": 0, "err6": 0}
        answers: dict[int, int] = {}      # ERR code -> replies to our HELLOs
        while True:
            now = self._clock()
            if now >= deadline:
                if not (noise["damaged"] or noise["errs"]) or noise["hellos"] >= NOISE_RETRIES:
                    break
                # the probe is there and answering; the line damages it: keep asking
                deadline, next_hello = now + HELLO_INTERVAL_S, now
            if now >= next_hello:
                if self._buf and noise["hellos"]:
                    noise["damaged"] += 1       # the last reply was cut off
                    self._drop_partial()
                cid = self._new_id()
                hello_ids.add(cid)
                noise["hellos"] += 1
                self._send(cid, "HELLO", PROTO_MIN, PROTO_MAX)
                next_hello = now + HELLO_INTERVAL_S
            line = self._read_line(min(deadline, next_hello))
            if line is None:
                continue
            crc_seen = self.stats["crc_errors"]
            reply = self._parse(line)
            if reply is None:
                if self.stats["crc_errors"] > crc_seen:
                    noise["damaged"] += 1      # a reply damaged on the way: ask again now
                    next_hello = self._clock()
                elif sample is None and line and line not in self._recent_sent:
                    sample = line
                continue
            saw_protocol = True
            if reply.is_async:
                if reply.verb == "BOOT":
                    self.boot_banner = dict(reply.fields)
                    # The firmware is up: ask soon. A HELLO sent just before may still be
                    # answered (no bootloader swallowed it), so give it a moment first.
                    next_hello = min(next_hello, self._clock() + BANNER_GRACE_S)
                else:
                    self.stats["stray_lines"] += 1
                continue
            if reply.id in hello_ids:
                if reply.ok and reply.verb == "HELLO":
                    self._accept_hello(reply.fields)
                    return
                # ERR 6 twice is a real version mismatch (once may be a damaged HELLO);
                # any other ERR to our well-formed HELLO is line damage (or another
                # program typing into the port): ask again
                noise["err6" if reply.err_code == 6 else "errs"] += 1
                if noise["err6"] >= 2:
                    raise self._version_error()
                answers[reply.err_code] = answers.get(reply.err_code, 0) + 1
                if (reply.err_code in _ANSWER_ERRS and answers[reply.err_code] >= CONFIRM_ERRS
                        and not noise["damaged"]):
                    raise DeviceError(
                        f"{self.port} answered HELLO with 'ERR {reply.err_code} "
                        f"{reply.err_reason}' {CONFIRM_ERRS} times on a clean line: not a "
                        "compatible hostctl probe firmware (reflash firmware/)")
                next_hello = self._clock()
                continue
            if reply.id == 0 and not reply.ok:
                noise["errs"] += 1
                next_hello = self._clock()   # our HELLO arrived mangled (bootloader noise)
                continue
            self.stats["stray_lines"] += 1
        self._handshake_failed(start, rx_before, saw_protocol, sample, noise, crc_before,
                               echoes_before, junk_before)

    def _handshake_failed(self, start: float, rx_before: int, saw_protocol: bool,
                          sample: bytes | None, noise: dict[str, int], crc_before: int,
                          echoes_before: int, junk_before: int) -> None:
        """No HELLO reply in time: say whether it was silence, noise, or not a probe."""
        waited = self._clock() - start
        if sample is None and self._buf:
            sample = bytes(self._buf[:40])
        if self._rx_bytes == rx_before:
            raise DeviceTimeout(
                f"no answer from {self.port} within {waited:.1f} s: is the hostctl probe "
                "firmware flashed and is this the right port? (see `hostctl devices`)")
        damaged = max(noise["damaged"], self.stats["crc_errors"] - crc_before)
        if damaged or noise["errs"] or noise["err6"]:
            raise LineNoise(self.port, "HELLO", noise["hellos"], damaged,
                            noise["errs"] + noise["err6"], 0, waited)
        if saw_protocol:
            raise DeviceTimeout(
                f"probe on {self.port} sends protocol lines but did not answer HELLO within "
                f"{waited:.1f} s: wrong baud rate? try again, or another cable/port")
        if self.stats["echoes"] > echoes_before and self._junk_count() == junk_before \
                and sample is None:
            raise DeviceError(f"{self.port} only echoes our commands back (a loopback or a "
                              "terminal, not a hostctl probe)")
        shown = (sample or b"")[:40].decode("ascii", "backslashreplace")
        raise DeviceError(
            f"{self.port} answers but is not a hostctl probe (no HELLO reply in {waited:.1f} s; "
            f"it sent e.g. {shown!r}); wrong port, or the firmware is not flashed")

    def _accept_hello(self, fields: dict[str, str]) -> None:
        proto = fields.get("proto", "")
        if not proto.isdigit() or not PROTO_MIN <= int(proto) <= PROTO_MAX:
            raise DeviceError(f"{self.port} replied to HELLO with proto={proto or '?'}, this "
                              f"hostctl speaks {_versions()}")
        self.info = dict(fields)

    def _version_error(self) -> DeviceError:
        """ERR 6 carries no version: read it from the banner or an ID command."""
        fw_proto, fw = None, None
        if self.boot_banner:
            fw_proto, fw = self.boot_banner.get("proto"), self.boot_banner.get("fw")
        if fw_proto is None:
            try:
                reply = self._transact("ID", timeout_s=min(self.timeout_s, 1.0), retries=0)
                fw_proto, fw = reply.fields.get("proto"), reply.fields.get("fw")
            except DeviceError:
                pass
        theirs = f"protocol {fw_proto}" if fw_proto else "an unknown protocol version"
        fw_txt = f" (firmware {fw})" if fw else ""
        return DeviceError(f"probe on {self.port} speaks {theirs}{fw_txt}, this hostctl speaks "
                           f"{_versions()}: update hostctl or reflash the firmware")


def _versions() -> str:
    if PROTO_MIN == PROTO_MAX:
        return f"protocol {PROTO_MIN}"
    return f"protocols {PROTO_MIN}..{PROTO_MAX}"
