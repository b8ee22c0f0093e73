"""Damaged run folders given to `interp train-sae --resume`: a corrupt, truncated or
wrong-shaped cfg.json is refused with one line naming the file; a damaged history.jsonl is
recovered (its bad lines left out, with a warning line). Never a traceback."""

import json
import shutil
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_damage import damaged_json
from typer.testing import CliRunner

from interp.cli import app

runner = CliRunner()
SMALL = ["--tokens", "2048", "--batch-tokens", "512", "--eval-tokens", "256", "--ctx-len", "32"]
SMALL += ["--batch-size", "8", "--expansion", "2", "--k", "4", "--device", "cpu"]


@pytest.fixture(scope="module")
def finished(tiny_dirs, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("runs") / "r"
    res = runner.invoke(
        app,
        [
            "train-sae",
            "--model",
            str(tiny_dirs["llama"]),
            "--layer",
            "1",
            "--out",
            str(out),
            *SMALL,
        ],
    )
    assert res.exit_code == 0, res.output
    return out


def _copy(finished: Path, tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("copy") / "r"
    shutil.copytree(finished, copy)
    return copy


@settings(max_examples=60, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_damaged_cfg_json_is_refused_with_one_line(finished, tmp_path_factory, data):
    copy = _copy(finished, tmp_path_factory)
    original = (finished / "cfg.json").read_bytes()
    kinds = ("bytes", "json", "truncate", "replace", "delete")
    _, text = data.draw(damaged_json(original, kinds, lambda cfg: [(k,) for k in cfg]))
    (copy / "cfg.json").write_bytes(text)
    res = runner.invoke(app, ["train-sae", "--resume", str(copy)])
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    assert "Traceback" not in res.output
    if res.exit_code != 0:  # a change that leaves a valid, equal config (e.g. out) may resume
        assert res.exit_code == 2
        flat = " ".join(res.output.split())
        assert "error:" in flat or "Usage" in flat, flat


@settings(max_examples=15, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(garbage=st.binary(min_size=1, max_size=40))
def test_damaged_history_is_recovered_with_a_warning(finished, tmp_path_factory, garbage):
    copy = _copy(finished, tmp_path_factory)
    lines = (finished / "history.jsonl").read_bytes().splitlines()
    damaged = lines[:1] + [garbage.replace(b"\n", b" ")] + lines[1:] + [lines[-1][:7]]
    (copy / "history.jsonl").write_bytes(b"\n".join(damaged) + b"\n")
    res = runner.invoke(app, ["train-sae", "--resume", str(copy)])
    assert res.exit_code == 0, res.output
    assert "warning:" in res.output and "history.jsonl" in res.output
    steps = [json.loads(line)["step"] for line in (copy / "history.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps))
