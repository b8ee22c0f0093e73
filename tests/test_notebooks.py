"""The tutorial notebooks (docs/notebooks/) run, and are saved with the outputs of their run.

Each notebook is executed here in a fresh kernel with nbclient, as `docs/notebooks/build.py`
builds it: a cell that raises fails the test. The saved `.ipynb` must hold exactly the cells of
its percent-format source and the outputs of a run (the same kinds of output per cell as this
run produces), and its figures must be offline (plotly.js embedded, nothing fetched).
"""

import importlib.util
import re
import time
from pathlib import Path

import nbformat
import pytest

HERE = Path(__file__).parents[1] / "docs" / "notebooks"
_spec = importlib.util.spec_from_file_location("notebook_build", HERE / "build.py")
build = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(build)

SOURCES = build.sources()
REMOTE_SCRIPT = re.compile(r"<script[^>]*\bsrc=[\"']?(https?:)?//", re.IGNORECASE)


def saved(source: Path) -> nbformat.NotebookNode:
    path = source.with_suffix(".ipynb")
    assert path.is_file(), f"{path.name} is missing: run `python docs/notebooks/build.py`"
    return nbformat.read(path, as_version=4)


def output_kinds(cell: nbformat.NotebookNode) -> list[tuple[str, ...]]:
    """What a cell showed, independent of numbers and of how streams were chunked: the mime
    types of each rich output, and whether it printed."""
    kinds = [tuple(sorted(o["data"])) for o in cell.get("outputs", []) if "data" in o]
    printed = any(
        o["output_type"] == "stream" and o["name"] == "stdout" for o in cell.get("outputs", [])
    )
    return [*kinds, ("stdout",)] if printed else kinds


def test_there_are_three_notebooks():
    assert [s.stem[:2] for s in SOURCES] == ["01", "02", "03"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_saved_notebook_is_its_source_with_outputs(source):
    nb = saved(source)
    assert [(c.cell_type, c.source) for c in nb.cells] == build.cells(source.read_text()), (
        f"{source.name} changed since {source.stem}.ipynb was built: rebuild it"
    )
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert all(c.execution_count is not None for c in code), "saved without running"
    assert sum(bool(c.outputs) for c in code) >= len(code) - 2, "saved without outputs"
    assert not [o for c in code for o in c.outputs if o["output_type"] == "error"]


@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_saved_figures_are_offline(source):
    """plotly's notebook renderer embeds plotly.js once (a dashboard view carries its own copy,
    HTML-escaped in its iframe); nothing else loads a script from the network (plotly.js itself
    names a CDN only as the default of its unused topojson URL)."""
    from html import escape

    from plotly.offline import get_plotlyjs

    js = get_plotlyjs()
    nb = saved(source)
    html = [
        o["data"]["text/html"]
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.outputs
        if "text/html" in o.get("data", {})
    ]
    joined = "\n".join(html)
    assert joined.count(js) == 1, "plotly.js should be embedded once, by the notebook renderer"
    rest = joined.replace(js, "").replace(escape(js, quote=True), "")
    assert "cdn.plot.ly" not in rest and not REMOTE_SCRIPT.search(rest)


def test_a_failing_cell_fails_the_run():
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("x = 1"), nbformat.v4.new_code_cell("1 / 0")]
    with pytest.raises(CellExecutionError, match="ZeroDivisionError"):
        build.execute(nb, HERE)


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=lambda s: s.stem)
def test_notebook_runs_and_shows_what_was_saved(source):
    """A fresh kernel runs every cell (a raising cell raises here), and each cell shows the
    same kinds of output as the saved notebook."""
    nb = build.notebook(source)
    start = time.perf_counter()
    build.execute(nb, HERE)
    print(f"{source.name}: {time.perf_counter() - start:.1f} s")
    fresh = [output_kinds(c) for c in nb.cells if c.cell_type == "code"]
    kept = [output_kinds(c) for c in saved(source).cells if c.cell_type == "code"]
    assert fresh == kept
