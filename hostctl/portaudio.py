"""sounddevice / PortAudio, imported lazily: devices listed and resolved, every failure one
AudioError line with the fix. Shared by the sound card output (:mod:`hostctl.audio`) and the
virtual bench's listener, which records from the same sound server.
"""

from __future__ import annotations

from typing import Any

from hostctl.errors import AudioError

_PA_FIX = "install libportaudio2 (apt-get install libportaudio2)"
_SERVER_FIX = ("connect a sound card, or start a sound server (virtual one for tests: "
               "eval \"$(bash .ci/pulse.sh)\")")


def import_sd() -> Any:
    try:
        import sounddevice as sd
    except OSError as e:          # 'PortAudio library not found'
        raise AudioError(f"{e}: {_PA_FIX}") from None
    except ImportError:
        raise AudioError("python package sounddevice missing: pip install sounddevice") from None
    return sd


_PA_CODES = {
    -9997: "sample rate not supported",           # paInvalidSampleRate
    -9985: "device unavailable (busy?)",           # paDeviceUnavailable
    -9996: "invalid device",                       # paInvalidDevice
    -9998: "channel count not supported",          # paInvalidChannelCount
}


def pa_message(e: BaseException) -> str:
    """One line from a PortAudioError: PortAudio's text, its host error, no newlines."""
    args = getattr(e, "args", ())
    text = str(args[0]) if args else str(e)
    if len(args) > 2 and isinstance(args[2], tuple) and len(args[2]) > 2 and args[2][2]:
        text += f" ({args[2][2]})"
    return " ".join(text.split())


def pa_code(e: BaseException) -> int | None:
    args = getattr(e, "args", ())
    return args[1] if len(args) > 1 and isinstance(args[1], int) else None


def map_open_error(e: BaseException, name: str, rate: int, channels: int) -> AudioError:
    msg, code = pa_message(e), pa_code(e)
    low = msg.lower()
    if code == -9997 or "sample rate" in low:
        return AudioError(f"audio device '{name}' does not support {rate} Hz ({msg}); "
                          "choose another {sample_rate} (44100 or 48000 usually work)"
                          ).naming(sample_rate="sample rate")
    if code == -9998 or "channel" in low:
        return AudioError(f"audio device '{name}' cannot open {channels} output channel(s) "
                          f"({msg}); choose another {{device}}").naming(device="audio device")
    if code == -9985 or "busy" in low or "unavailable" in low:
        return AudioError(f"audio device '{name}' is busy or unavailable ({msg}); close the "
                          "program using it or choose another {device}").naming(
                              device="audio device")
    return AudioError(f"cannot open audio device '{name}': {msg}; check `hostctl devices` "
                      "and {device}").naming(device="the audio device")


def probe_output_devices() -> tuple[list[dict[str, Any]], str | None]:
    """(devices, reason): the output devices, and why the list is empty when it is."""
    try:
        sd = import_sd()
        devs = sd.query_devices()
        default_out = sd.default.device[1]
    except AudioError as e:
        return [], str(e)
    except Exception as e:  # noqa: BLE001 - PortAudioError and friends: report, do not raise
        return [], f"PortAudio cannot list devices: {pa_message(e)}"
    try:
        apis = {i: h["name"] for i, h in enumerate(sd.query_hostapis())}
    except Exception:  # noqa: BLE001
        apis = {}
    out = []
    for i, d in enumerate(devs):
        if d["max_output_channels"] > 0:
            out.append({"index": i, "name": d["name"],
                        "hostapi": apis.get(d.get("hostapi"), ""),
                        "max_output_channels": int(d["max_output_channels"]),
                        "default_samplerate": float(d["default_samplerate"]),
                        "default": i == default_out})
    return out, (None if out else f"PortAudio lists no output device: {_SERVER_FIX}")


def list_output_devices() -> list[dict[str, Any]]:
    """Output devices (index, name, hostapi, max_output_channels, default_samplerate, default).

    [] when PortAudio is missing or lists nothing; :func:`probe_output_devices` says why.
    """
    return probe_output_devices()[0]


def resolve_device(sd: Any, device: str | int | None, kind: str = "output") -> tuple[int, dict]:
    """Device index and info for a name substring, an index (int or digits) or None (default)."""
    try:
        devs = sd.query_devices()
    except sd.PortAudioError as e:
        raise AudioError(f"PortAudio cannot list devices: {pa_message(e)}") from None
    key = f"max_{kind}_channels"
    usable = [i for i, d in enumerate(devs) if d[key] > 0]
    if not usable:
        raise AudioError(f"no audio {kind} device found: {_SERVER_FIX}")
    if device is None or (isinstance(device, str) and not device.strip()):
        idx = sd.default.device[0 if kind == "input" else 1]
        if not isinstance(idx, int) or idx not in usable:
            idx = usable[0]
    elif isinstance(device, int) or (isinstance(device, str) and device.strip().isdigit()):
        idx = int(device)
        if idx not in usable:
            raise AudioError(f"audio device index {idx} is not an {kind} device; "
                             "see `hostctl devices` for the list")
    else:
        try:
            idx = int(sd.query_devices(device, kind=kind)["index"])
        except ValueError as e:
            names = ", ".join(f"[{i}] {devs[i]['name']}" for i in usable)
            if str(e).startswith("Multiple"):
                raise AudioError(f"several audio {kind} devices match '{device}' ({names}); "
                                 "give more of the name or the index") from None
            raise AudioError(f"no audio {kind} device matching '{device}' (have: {names}); "
                             "see `hostctl devices`") from None
        except sd.PortAudioError as e:
            raise AudioError(f"cannot query audio device '{device}': {pa_message(e)}") from None
    return idx, dict(devs[idx])
