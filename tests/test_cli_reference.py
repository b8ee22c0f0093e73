"""docs/cli.md is the CLI's own `--help`: regenerated here and compared, so it cannot drift."""

import subprocess
import sys
from pathlib import Path

from interp.cli import app
from interp.cli_reference import WIDTH, command_paths, help_text, reference

DOC = Path(__file__).parents[1] / "docs" / "cli.md"


def test_docs_cli_md_equals_the_generated_reference():
    assert DOC.read_text() == reference(app), (
        "docs/cli.md is stale: run `python -m interp.cli_reference > docs/cli.md`"
    )


def test_the_reference_is_what_the_installed_command_prints():
    """The in-process rendering equals a real `interp ... --help` in a subprocess (same width),
    for the root and one nested command."""
    paths = list(command_paths(app))
    assert ("organism", "eval") in paths and ("train-sae",) in paths
    for path in [(), ("organism", "eval")]:
        env = {"COLUMNS": str(WIDTH), "NO_COLOR": "1", "TERM": "dumb"}
        out = subprocess.run(
            [sys.executable, "-m", "interp", *path, "--help"],
            capture_output=True,
            text=True,
            env={**env, "PATH": "/usr/bin:/bin"},
            check=True,
        ).stdout
        lines = "\n".join(line.rstrip() for line in out.strip("\n").splitlines())
        assert lines.replace("python -m interp", "interp") == help_text(app, path)
