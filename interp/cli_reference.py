"""The CLI reference (`docs/cli.md`), generated from the typer app so that it cannot drift.

    python -m interp.cli_reference > docs/cli.md

Each command's section is its own `--help`, rendered at a fixed width with no colour;
`tests/test_cli_reference.py` regenerates it and compares it with the file.
"""

import os
import sys
from collections.abc import Iterator
from typing import Any

import typer
from typer.testing import CliRunner

WIDTH = 100
"""Columns the help is rendered at (the reference's width, whatever the terminal)."""

HEADER = """# CLI reference

Generated from the commands themselves by `python -m interp.cli_reference > docs/cli.md`;
`tests/test_cli_reference.py` fails when this file and `--help` disagree. Each option's help is
the docstring of its config field (`interp/*/config.py`).
"""


def command_paths(app: typer.Typer) -> Iterator[tuple[str, ...]]:
    """Every command path of `app`, depth first in the order `--help` lists them: () is the root."""

    def walk(cmd: Any, path: tuple[str, ...]) -> Iterator[tuple[str, ...]]:
        yield path
        for name, sub in getattr(cmd, "commands", {}).items():
            yield from walk(sub, (*path, name))

    yield from walk(typer.main.get_command(app), ())


def help_text(app: typer.Typer, path: tuple[str, ...]) -> str:
    """`interp <path> --help` as plain text at `WIDTH` columns."""
    # COLUMNS, not TERMINAL_WIDTH: typer reads TERMINAL_WIDTH once, when its help formatter is
    # first imported, so setting it here would fix the width of every later help in the process.
    env = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}
    result = CliRunner().invoke(app, [*path, "--help"], env=env, prog_name="interp")
    if result.exit_code != 0:
        raise RuntimeError(f"interp {' '.join(path)} --help failed:\n{result.output}")
    return "\n".join(line.rstrip() for line in result.output.strip("\n").splitlines())


def reference(app: typer.Typer) -> str:
    """The whole reference as markdown."""
    parts = [HEADER]
    for path in command_paths(app):
        title = " ".join(("interp", *path))
        parts.append(f"## `{title}`\n\n```\n{help_text(app, path)}\n```\n")
    return "\n".join(parts)


def main() -> None:
    from interp.cli import app

    os.environ["COLUMNS"] = str(WIDTH)
    sys.stdout.write(reference(app))


if __name__ == "__main__":
    main()
