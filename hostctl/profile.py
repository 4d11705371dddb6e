"""The bench profile: defaults for the options retyped every run.

Sources, later ones win: the user's file (``$XDG_CONFIG_HOME/hostctl/config.toml``,
default ``~/.config/hostctl/config.toml``), then ``hostctl.toml`` in the working directory,
then ``HOSTCTL_*`` environment variables; the command line beats them all (the values
become click's ``default_map``, so an option given explicitly is never replaced). A file::

    port = "/dev/ttyACM0"
    audio_device = "USB Audio"
    audio_rate = 48000
    settle = 0.1
    installed = "R_low=200,R_band_low=39,R_band_high=160,R_high=33"
    target = "organ.toml"          # relative to this file
    series = "E24"
    capacitance = "1e-6"
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hostctl.errors import InputError

PROJECT_FILE = "hostctl.toml"
#: profile key -> (type, environment variable)
KEYS: dict[str, tuple[type, str]] = {
    "port": (str, "HOSTCTL_PORT"),
    "audio_device": (str, "HOSTCTL_AUDIO_DEVICE"),
    "audio_rate": (int, "HOSTCTL_AUDIO_RATE"),
    "settle": (float, "HOSTCTL_SETTLE"),
    "installed": (str, "HOSTCTL_INSTALLED"),
    "target": (str, "HOSTCTL_TARGET"),
    "series": (str, "HOSTCTL_SERIES"),
    "capacitance": (str, "HOSTCTL_CAPACITANCE"),
}
#: command -> {profile key: the command's parameter name}
PARAMS: dict[str, dict[str, str]] = {
    "calibrate": {"port": "port", "audio_device": "audio_device", "audio_rate": "audio_rate",
                  "settle": "settle_s", "installed": "installed", "target": "target_file",
                  "series": "series", "capacitance": "capacitance"},
    "check": {"port": "port", "audio_device": "audio_device", "audio_rate": "audio_rate",
              "settle": "settle_s"},
    "probe": {"port": "port"},
    "tone": {"audio_device": "audio_device", "audio_rate": "sample_rate"},
    "design": {"target": "target_file", "series": "series", "capacitance": "capacitance"},
}


@dataclass
class Profile:
    values: dict[str, Any] = field(default_factory=dict)
    source: dict[str, str] = field(default_factory=dict)     # key -> where it came from

    def default_map(self) -> dict[str, dict[str, Any]]:
        """click's default_map: per command, parameter -> value."""
        return {cmd: {param: self.values[k] for k, param in keys.items() if k in self.values}
                for cmd, keys in PARAMS.items()}


def user_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "hostctl" / "config.toml"


def _coerce(key: str, value: Any, where: str) -> Any:
    kind = KEYS[key][0]
    if key == "installed" and isinstance(value, dict):   # a TOML table of ohms
        value = ",".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise InputError(f"{key}: {value!r} is not a {kind.__name__}", where)
    if kind is int and isinstance(value, float) and not value.is_integer():
        raise InputError(f"{key}: {value!r} is not a whole number", where)
    try:
        return kind(value)
    except ValueError:
        raise InputError(f"{key}: {value!r} is not a {kind.__name__}", where) from None


def _read(path: Path, prof: Profile) -> None:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", str(path)) from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise InputError(f"not valid TOML: {e}", str(path)) from None
    for k, v in doc.items():
        if k not in KEYS:
            raise InputError(f"unknown key '{k}' (known: {', '.join(KEYS)})", str(path))
        v = _coerce(k, v, str(path))
        if k == "target" and not Path(v).is_absolute():
            v = str(path.parent / v)
        prof.values[k], prof.source[k] = v, str(path)


def load(cwd: Path | None = None, env: dict[str, str] | None = None) -> Profile:
    """The merged profile: user file < ./hostctl.toml < HOSTCTL_* variables."""
    env = os.environ if env is None else env
    prof = Profile()
    _read(user_file(), prof)
    _read((cwd or Path.cwd()) / PROJECT_FILE, prof)
    for k, (_, var) in KEYS.items():
        if env.get(var, "") != "":
            prof.values[k] = _coerce(k, env[var], f"${var}")
            prof.source[k] = f"${var}"
    return prof
