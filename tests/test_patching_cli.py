"""`interp patch`: results equal the library's, files written, bad input as one error line."""

import json

import pytest
import torch
from typer.testing import CliRunner

from interp.cli import app

pytestmark = pytest.mark.usefixtures("one_thread")
runner = CliRunner()
NAMES = "When Rose and Paul went to the river, {} gave a book to"


def _invoke(*args: str):
    return runner.invoke(app, ["patch", *args], env={"COLUMNS": "200"})


def test_task_ablation_writes_the_librarys_result_and_finds_the_heads(tmp_path):
    from interp.models import load_model
    from interp.patching import ablate, make_task

    out = tmp_path / "run"
    res = _invoke(
        "--task",
        "induction",
        "--pairs",
        "2",
        "--grid",
        "heads",
        "--ablate",
        "mean",
        "--out",
        str(out),
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "result.json").read_text())
    model = load_model(device="cpu")
    task = make_task(model, "induction", n=2)
    want = ablate(
        model,
        task.clean,
        task.metric,
        "heads",
        kind="mean",
        reference=task.corrupt,
        corrupt=task.corrupt,
    )
    torch.testing.assert_close(torch.tensor(saved["values"]), want.values, atol=1e-4, rtol=1e-5)
    assert saved["axes"] == ["layer", "head"] and json.loads((out / "cfg.json").read_text())
    assert "L0 H3" in res.output.split("wrote")[0]  # printed top entries
    html = (out / "report.html").read_text()
    assert html.count("plotly.js v") <= 2 and "L1" in html  # plotly.js embedded once
    again = _invoke("--task", "induction", "--grid", "heads", "--out", str(out))
    assert again.exit_code == 2 and "--force" in again.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            [
                "--clean",
                NAMES.format("Rose"),
                "--corrupt",
                "Rose went home,",
                "--answer",
                " Paul",
                "--wrong",
                " Rose",
            ],
            "different lengths: clean 15 tokens",
        ),
        (
            [
                "--clean",
                NAMES.format("Rose"),
                "--corrupt",
                NAMES.format("Paul"),
                "--answer",
                " Rosemary",
                "--wrong",
                " Rose",
            ],
            "is 3 tokens",
        ),
        (["--clean", NAMES.format("Rose"), "--corrupt", NAMES.format("Paul")], "needs --answer"),
        (["--task", "names", "--clean", "x", "--corrupt", "y"], "either --task or --clean"),
        (["--grid", "neurons"], "'neurons' is not one of resid, attn, heads, mlp, edges"),
        (["--task", "ioi"], "'ioi' is not one of names, induction, refusal"),
    ],
)
def test_bad_input_is_one_error_line(args, message, tmp_path):
    res = _invoke(*args, "--out", str(tmp_path / "x"))
    assert res.exit_code == 2, res.output
    assert message in " ".join(res.output.split()), res.output
    assert "Traceback" not in res.output
