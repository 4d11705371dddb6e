"""The CLI's commands: each parses strings into the library's types and words its errors."""

from __future__ import annotations

import importlib

#: the arguments of the running command (report.json records them); set by ``hostctl.cli.main``
ARGV: list[str] = []

#: backends the commands opt in to: each registers its serial URL handlers and tone outputs
#: (the virtual bench: ``sim://`` ports, ``--sim``, ``--audio-device sim:SOCKET``)
BACKENDS = ("sims.backend",)
#: the commands that open ports or tone outputs
USES_BACKENDS = frozenset({"calibrate", "check", "devices", "probe", "tone"})


def use_backends() -> None:
    """Opt in to the backends that are installed (a missing one just offers nothing)."""
    for name in BACKENDS:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        module.install()
