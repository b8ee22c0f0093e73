"""Build the tutorial notebooks from their sources and run them, saving the outputs.

    python docs/notebooks/build.py            # every notebook
    python docs/notebooks/build.py 02         # the ones whose name starts with 02

Each `NN_name.py` here is a notebook in the "percent" format: a line `# %%` starts a code cell,
`# %% [markdown]` a markdown cell (its lines without their leading `# `). The build writes
`NN_name.ipynb` next to it, executed in a fresh kernel with one torch thread, outputs included (plotly figures are
rendered by plotly's offline `notebook` renderer: plotly.js is embedded once, no CDN).
`tests/test_notebooks.py` checks that each `.ipynb` holds its source's cells and runs.
"""

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).parent
TIMEOUT_S = 600
"""Longest a single cell may run."""
THREADS = "1"
"""torch threads of the kernel (OMP_NUM_THREADS): on a shared CPU two threads can stall each
other and run many times slower than one (docs/evals.md measured 208 s against 33 s)."""


def sources() -> list[Path]:
    """The notebook sources, in order."""
    return sorted(p for p in HERE.glob("[0-9][0-9]_*.py"))


def cells(source: str) -> list[tuple[str, str]]:
    """(kind, text) of each cell of a percent-format source; kind is 'code' or 'markdown'."""
    out: list[tuple[str, list[str]]] = []
    for line in source.splitlines():
        if line.startswith("# %%"):
            out.append(("markdown" if "[markdown]" in line else "code", []))
        elif out:
            kind, lines = out[-1]
            if kind == "markdown":
                line = line[2:] if line.startswith("# ") else line.lstrip("#")
            lines.append(line)
    return [(kind, "\n".join(lines).strip("\n")) for kind, lines in out]


def notebook(source: Path) -> nbformat.NotebookNode:
    """The unexecuted notebook of `source`."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    for i, (kind, text) in enumerate(cells(source.read_text())):
        make = nbformat.v4.new_markdown_cell if kind == "markdown" else nbformat.v4.new_code_cell
        nb.cells.append(make(text, id=f"cell-{i}"))  # stable ids: rebuilds diff cleanly
    return nb


def execute(nb: nbformat.NotebookNode, cwd: Path) -> nbformat.NotebookNode:
    """Run `nb` in a fresh python3 kernel in `cwd`; a failing cell raises CellExecutionError."""
    client = NotebookClient(
        nb, timeout=TIMEOUT_S, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute(env={**os.environ, "OMP_NUM_THREADS": THREADS})
    return nb


def build(source: Path) -> float:
    """Execute `source`'s notebook and save it with its outputs; returns the seconds it ran."""
    nb = notebook(source)
    start = time.perf_counter()
    execute(nb, HERE)
    seconds = time.perf_counter() - start
    nbformat.write(nb, source.with_suffix(".ipynb"), version=4)
    return seconds


def main(prefixes: list[str]) -> None:
    for source in sources():
        if prefixes and not any(source.name.startswith(p) for p in prefixes):
            continue
        print(f"{source.name}: {build(source):.1f} s", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
