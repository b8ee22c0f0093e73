"""The README's tour runs, and prints what the README shows.

The tour is the `console` code blocks of the README's "5-minute tour" section: each `$ ` line
is a command (a trailing `\\` continues it), the lines after it are its standard output. Each
block runs in order in a fresh folder, in its own process per command, as a new user would run
it (`bash -c`, 100 columns, one torch thread); blocks run two at a time.

The shape of each output must be the README's: the same lines in the same order, each line's
words and table borders the same (runs of spaces and of rule characters count as one, since a
table's columns widen with their numbers), and every number within `REL` of the README's
(or `ABS`). Wall-clock figures (a number before `s` or `tok/s`, the explainer table's seconds
column) are replaced by a pattern on both sides, since they depend on the machine.
"""

import os
import re
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

README = Path(__file__).parents[1] / "README.md"
SECTION = "## A 5-minute tour"
REL, ABS = 0.05, 0.02
"""Numbers may differ by 5% of the README's value or by 0.02, whichever is larger: runs on
another CPU or BLAS change the last digits of trained SAEs and sums, nothing more."""

NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")
WALL_CLOCK = re.compile(r"[\d,.]+(?= ?(?:s|tok/s)\b)")  # "5.3 s", "3,929 tok/s"
SECONDS_COLUMN = re.compile(r"[\d.]+(?= +│$)")
"""The last column of `interp explain`'s table: each method's wall time."""
RULES = re.compile(r"([─━═ ])\1+")


def tour() -> list[list[tuple[str, list[str]]]]:
    """The tour's blocks, each a list of (command, expected output lines)."""
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    section = text[start : end if end >= 0 else None]
    blocks = []
    for body in re.findall(r"```console\n(.*?)```", section, re.DOTALL):
        commands: list[tuple[str, list[str]]] = []
        lines = body.rstrip("\n").split("\n")
        i = 0
        while i < len(lines):
            line = lines[i]
            if line.startswith("$ "):
                command = line[2:]
                while command.endswith("\\"):
                    i += 1
                    command = command[:-1].rstrip() + " " + lines[i].strip()
                commands.append((command, []))
            else:
                assert commands, f"output before any command in the tour: {line!r}"
                commands[-1][1].append(line)
            i += 1
        blocks.append(commands)
    return blocks


def without_times(line: str, command: str) -> str:
    line = WALL_CLOCK.sub("<t>", line)
    return SECONDS_COLUMN.sub("<t>", line) if command.startswith("interp explain") else line


def skeleton(line: str) -> str:
    """The line without its numbers and padding."""
    return RULES.sub(r"\1", NUMBER.sub("#", line)).rstrip()


def numbers(line: str) -> list[float]:
    return [float(n.replace(",", "")) for n in NUMBER.findall(line)]


def mismatches(expected: list[str], got: list[str], command: str = "") -> list[str]:
    """What differs in shape between the README's output and a run's (empty if none)."""
    expected = [without_times(line, command) for line in expected]
    got = [without_times(line, command) for line in got]
    got = [line.rstrip() for line in got]
    if len(got) != len(expected):
        return [f"{len(got)} lines, the README shows {len(expected)}:\n" + "\n".join(got)]
    problems = []
    for want, have in zip(expected, got, strict=True):
        if skeleton(want) != skeleton(have):
            problems.append(f"line differs:\n  README: {want}\n  run:    {have}")
            continue
        for a, b in zip(numbers(want), numbers(have), strict=True):
            if abs(a - b) > max(ABS, REL * abs(a)):
                problems.append(
                    f"{b} is not within tolerance of {a}:\n  README: {want}\n  run:    {have}"
                )
    return problems


def run_block(block: list[tuple[str, list[str]]], cwd: Path) -> list[str]:
    """Run a block's commands in order in `cwd`; the problems found, each naming its command."""
    env = {**os.environ, "COLUMNS": "100", "OMP_NUM_THREADS": "1", "NO_COLOR": "1", "TERM": "dumb"}
    problems = []
    for command, expected in block:
        start = time.perf_counter()
        done = subprocess.run(
            ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True, timeout=600
        )
        seconds = time.perf_counter() - start
        if done.returncode != 0:
            problems.append(f"$ {command}\nexit {done.returncode}:\n{done.stderr[-2000:]}")
            break
        problems += [
            f"$ {command} ({seconds:.0f} s)\n{p}"
            for p in mismatches(expected, done.stdout.split("\n")[:-1], command)
        ]
    return problems


def test_the_tour_is_found_and_parsed():
    blocks = tour()
    commands = [c for block in blocks for c, _ in block]
    assert len(blocks) >= 2 and len(commands) >= 5
    assert all(c.startswith("interp ") for c in commands)
    assert all(out for block in blocks for _, out in block), "a command without its output"


def test_shapes_compare_numbers_within_tolerance_and_patterns_for_time():
    table = "│ L3 H1 │              +7.6099 │"
    assert mismatches([table], ["│ L3 H1 │   +7.61 │"]) == []
    assert mismatches([table], ["│ L3 H1 │   +9.00 │"])  # a number out of tolerance
    assert mismatches([table], ["│ L3 H1 │ +7.6 │ extra │"])  # another shape
    assert mismatches(["│ pass │ 5.3 s, 3,929 tok/s │"], ["│ pass │ 61.0 s, 120 tok/s │"]) == []
    row = "│ ig │ 1' Mary' +3.03 │ 34 │ 0.61 │"
    assert (
        mismatches([row], ["│ ig │ 1' Mary' +3.03 │ 34 │ 9.15 │"], "interp explain --text x") == []
    )
    assert mismatches([row], ["│ ig │ 1' Mary' +3.03 │ 34 │ 9.15 │"], "interp patch")
    assert mismatches(["a", "b"], ["a"])


@pytest.mark.slow
def test_every_tour_command_runs_and_prints_what_the_readme_shows(tmp_path):
    blocks = tour()
    folders = [tmp_path / f"block{i}" for i in range(len(blocks))]
    for folder in folders:
        folder.mkdir()
    with ThreadPoolExecutor(max_workers=2) as pool:
        problems = [p for found in pool.map(run_block, blocks, folders) for p in found]
    assert not problems, "\n\n".join(problems)


def refresh() -> None:
    """Run the tour in fresh folders and paste each command's output under it in the README:
    `python tests/test_readme_tour.py --write` after a change that alters the output."""
    import tempfile

    env = {**os.environ, "COLUMNS": "100", "OMP_NUM_THREADS": "1", "NO_COLOR": "1", "TERM": "dumb"}
    text = README.read_text()
    start = text.index(SECTION)
    end = text.find("\n## ", start + len(SECTION))
    end = end if end >= 0 else len(text)

    def rerun(match: re.Match) -> str:
        lines, out, i = match.group(1).rstrip("\n").split("\n"), [], 0
        with tempfile.TemporaryDirectory() as cwd:
            while i < len(lines):
                if lines[i].startswith("$ "):
                    typed = [lines[i]]
                    while typed[-1].endswith("\\"):
                        i += 1
                        typed.append(lines[i])
                    command = " ".join(t.rstrip("\\").strip() for t in typed)[2:]
                    done = subprocess.run(
                        ["bash", "-c", command], cwd=cwd, env=env, capture_output=True, text=True
                    )
                    if done.returncode != 0:
                        raise SystemExit(f"$ {command}\nexit {done.returncode}\n{done.stderr}")
                    out += typed + [line.rstrip() for line in done.stdout.rstrip("\n").split("\n")]
                i += 1
        return "```console\n" + "\n".join(out) + "\n```"

    section = re.sub(r"```console\n(.*?)```", rerun, text[start:end], flags=re.DOTALL)
    README.write_text(text[:start] + section + text[end:])


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        raise SystemExit("usage: python tests/test_readme_tour.py --write")
    refresh()
