"""`interp capture` through typer's CliRunner: a run, its files, and clean errors."""

import dataclasses
import inspect
import json

import pytest
from typer.testing import CliRunner

from interp.capture.cache import open_cache
from interp.capture.cli import capture
from interp.capture.config import CaptureConfig
from interp.cli import app

runner = CliRunner()


@pytest.fixture
def base(tiny_dirs) -> list[str]:
    model = str(tiny_dirs["gpt2"])
    return ["capture", "--model", model, "--ctx-len", "16", "--tokens", "320", "--device", "cpu"]


def run(args: list[str]):
    return runner.invoke(app, args, catch_exceptions=False)


def test_options_are_the_config_fields():
    options = set(inspect.signature(capture).parameters) - {"ctx"}
    assert options == {f.name for f in dataclasses.fields(CaptureConfig)}
    result = runner.invoke(app, ["capture", "--help"], env={"COLUMNS": "300"})
    assert "Tokens per shard file, rounded down to whole contexts (at least one)." in result.output
    text = " ".join(result.output.split())
    assert "--decode-errors" in text and "--force" in text


def test_capture_writes_a_cache(base, tmp_path, tiny_dirs):
    out = tmp_path / "acts"
    args = base + ["--layer", "1", "--site", "mlp_out", "--hook", "blocks.0.hook_resid_post"]
    result = run(args + ["--shard-tokens", "128", "--batch-size", "4", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "tokens in cache" in result.output and "320" in result.output
    info = open_cache(out, model=str(tiny_dirs["gpt2"]), ctx_len=16)
    assert info.hooks == ["blocks.1.hook_mlp_out", "blocks.0.hook_resid_post"]
    assert len(info.shards) == 3 and info.n_tokens == 320
    cfg = CaptureConfig.from_dict(json.loads((out / "cfg.json").read_text()))
    assert cfg.layer == (1,) and cfg.shard_tokens == 128 and cfg.out == str(out)
    assert json.loads((out / "metrics.json").read_text())["n_tokens"] == 320

    again = run(args + ["--shard-tokens", "128", "--batch-size", "4", "--out", str(out)])
    assert again.exit_code == 2 and "pass --resume" in again.output
    resumed = run(
        args + ["--shard-tokens", "128", "--batch-size", "4", "--out", str(out), "--resume"]
    )
    assert resumed.exit_code == 0 and "0 / 3" in resumed.output  # nothing recomputed


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--layer", "5"], "layer 5 is out of range; valid layers are 0..2"),
        (["--layer", "1", "--site", "resid_pots"], "did you mean 'resid_post'"),
        (["--hook", "blocks.1.hook_mlp_outt"], "did you mean 'blocks.1.hook_mlp_out'"),
        (
            ["--layer", "1", "--dataset", "missing.jsonl"],
            "dataset file 'missing.jsonl' does not exist",
        ),
        (["--layer", "1", "--dtype", "float8"], "'float8' is not one of auto"),
        (["--tokens", "100"], "nothing to capture"),
        (["--layer", "1", "--ctx-len", "65"], "at most 64 positions); pass --ctx-len 64 or less"),
        (["--layer", "1", "--decode-errors", "ignore"], "'ignore' is not one of strict"),
    ],
)
def test_bad_input_is_one_clean_line_and_no_files(base, tmp_path, extra, message):
    out = tmp_path / "acts"
    result = run(base + extra + ["--out", str(out)])
    assert result.exit_code == 2
    assert message in " ".join(result.output.split())
    assert "Traceback" not in result.output
    assert not out.exists()


def test_environment_errors_are_one_clean_line(base, tmp_path):
    result = run(base + ["--layer", "1", "--out", "/proc/x"])
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "cannot write --out '/proc/x'" in " ".join(result.output.split())
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"caf\xc3 au lait\n")
    result = run(base + ["--layer", "1", "--dataset", str(bad), "--out", str(tmp_path / "acts")])
    text = " ".join(result.output.split())
    assert result.exit_code == 2 and f"{bad}:1 is not valid UTF-8" in text
    assert "--decode-errors" in text and not (tmp_path / "acts").exists()
    args = base + ["--layer", "1", "--dataset", str(bad), "--decode-errors", "replace"]
    result = run(args + ["--tokens", "16", "--out", str(tmp_path / "acts")])
    assert result.exit_code == 0, result.output


def test_hub_name_offline(tmp_path, monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    out = tmp_path / "acts"
    result = run(["capture", "--model", "interp-test/none", "--layer", "0", "--out", str(out)])
    assert result.exit_code == 2
    assert "could not reach the hub for 'interp-test/none'; no network" in result.output
    assert not out.exists()
