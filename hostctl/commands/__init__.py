"""The CLI's commands: each parses strings into the library's types and words its errors."""

#: the arguments of the running command (report.json records them); set by ``hostctl.cli.main``
ARGV: list[str] = []
