"""The CLI's commands: each parses strings into the library's types and words its errors."""

from __future__ import annotations

import importlib
import os
from importlib.metadata import entry_points

#: the arguments of the running command (report.json records them); set by ``hostctl.cli.main``
ARGV: list[str] = []

#: the entry-point group a backend registers under (pyproject ``[project.entry-points.
#: "hostctl.backends"]``, ``name = "module:install"``): the CLI opts in to what is installed
#: without naming it (the virtual bench: ``sim://`` ports, ``--sim``, ``--audio-device sim:``)
BACKEND_GROUP = "hostctl.backends"
#: extra backends by module (comma-separated; each module has ``install()``): a checkout that
#: is not installed, or a test, names its own
BACKENDS_ENV = "HOSTCTL_BACKENDS"
#: the commands that open ports or tone outputs
USES_BACKENDS = frozenset({"calibrate", "check", "devices", "probe", "tone"})


def use_backends() -> None:
    """Opt in to the installed backends and those $HOSTCTL_BACKENDS names (a module that is
    not importable just offers nothing: a backend is optional)."""
    installs = []
    for ep in entry_points(group=BACKEND_GROUP):
        try:
            installs.append(ep.load())
        except ImportError:
            continue
    for name in filter(None, (n.strip() for n in os.environ.get(BACKENDS_ENV, "").split(","))):
        try:
            installs.append(importlib.import_module(name).install)
        except ImportError:
            continue
    for install in installs:
        install()
