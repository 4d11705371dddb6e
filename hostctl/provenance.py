"""Where a result came from: versions, command line, audio device, probe, host.

Goes into report.json so a shared run folder says how it was made (and a surprising
result can be traced to a version or a device).
"""

from __future__ import annotations

import platform
import shlex
import sys
from datetime import UTC, datetime
from importlib import metadata
from typing import Any


def _version(dist: str) -> str | None:
    mod = sys.modules.get(dist)
    v = getattr(mod, "__version__", None)
    if v:
        return str(v)
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def provenance(*, audio_device: str | None = None, probe: dict[str, str] | None = None,
               port: str | None = None, argv: list[str] | None = None) -> dict[str, Any]:
    """The record for report.json's ``provenance`` block."""
    from hostctl import __version__

    args = list(argv if argv is not None else sys.argv[1:])
    return {
        "hostctl": __version__,
        "torch": _version("torch"),
        "numpy": _version("numpy"),
        "python": platform.python_version(),
        "command": "hostctl " + shlex.join(args),
        "audio_device": audio_device,
        "port": port,
        "probe": dict(probe or {}),
        "host_os": platform.platform(),
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
    }
