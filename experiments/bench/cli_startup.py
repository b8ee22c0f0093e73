"""How long the command line takes to answer `--help`, and what it imports.

    python experiments/bench/cli_startup.py [--repeats 7]

For `interp --help` and each command's `--help`: the median wall time of a fresh process, and
the cumulative import time of `interp.cli` (python -X importtime). Also checks that none of
torch, transformers and transformer_lens is imported (the test suite asserts the same).
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import time

COMMANDS = ([], ["capture"], ["train-sae"], ["organism", "eval"])
HEAVY = ("torch", "transformers", "transformer_lens")


def wall(args: list[str], repeats: int) -> float:
    exe = shutil.which("interp") or sys.exit("interp is not installed (pip install -e .)")
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([exe, *args, "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def import_seconds() -> float:
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import interp.cli"],
        check=True, capture_output=True, text=True,
    ).stderr  # fmt: skip
    line = next(x for x in out.splitlines() if x.rstrip().endswith("| interp.cli"))
    return int(line.split("|")[1]) / 1e6


def heavy_modules() -> list[str]:
    code = f"import sys, interp.cli; print(' '.join(m for m in {HEAVY!r} if m in sys.modules))"
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True
    ).stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    args = parser.parse_args()
    print(f"import interp.cli: {import_seconds():.3f} s (cumulative, -X importtime)")
    print(f"heavy modules imported: {heavy_modules() or 'none'}")
    for command in COMMANDS:
        name = " ".join(["interp", *command, "--help"])
        print(f"{name:32s} {wall(command, args.repeats):.3f} s (median of {args.repeats})")


if __name__ == "__main__":
    main()
