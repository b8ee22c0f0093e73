"""Hostile option values for every command option: each is refused with one clean line (a usage
error or an `error:` line), or accepted as valid; never a traceback, never a file left behind.

The model load is replaced by a sentinel, so an accepted combination stops right there: this
tests the validation that runs before anything heavy or written, option by option.
"""

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from interp.capture.config import CaptureConfig
from interp.cli import app
from interp.cli_common import option_specs
from interp.errors import InterpError
from interp.train_sae.config import TrainSAEConfig

runner = CliRunner()
HOSTILE = [
    "", " ", "-1", "0", "1", "nan", "inf", "-inf", "1e309", "1e6", "abc", "none", "None",
    "0.5", "2", "1,2", ",", "4,,8", "x" * 300, "☃", "\x00", "../..", "/proc/x", "--help",
    "12", "3e-3", "true", "[1]", "{}", "'", "\"",
]  # fmt: skip
SPECS = {
    "train-sae": [s for s in option_specs(TrainSAEConfig) if s.kind is not bool],
    "capture": [s for s in option_specs(CaptureConfig) if s.kind is not bool],
}


class ReachedModelLoad(InterpError):
    pass


@pytest.fixture
def no_model(monkeypatch):
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)  # a hub name fails at once
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")

    def refuse(*args, **kwargs):
        raise ReachedModelLoad("reached model loading")

    import interp.capture.run as capture_run
    import interp.train_sae.run as train_run

    monkeypatch.setattr(train_run, "load_model", refuse)
    monkeypatch.setattr("interp.models.load_model", refuse)
    if hasattr(capture_run, "load_model"):
        monkeypatch.setattr(capture_run, "load_model", refuse)


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck), database=None)
@given(
    command=st.sampled_from(sorted(SPECS)),
    picks=st.lists(
        st.tuples(st.integers(0, 10_000), st.sampled_from(HOSTILE)), min_size=1, max_size=3
    ),
)
def test_hostile_option_values_are_refused_cleanly(no_model, tmp_path_factory, command, picks):
    out = tmp_path_factory.mktemp("out") / "run"
    args = [command, "--out", str(out)]
    for index, value in picks:
        spec = SPECS[command][index % len(SPECS[command])]
        if spec.path[-1] in ("out", "resume"):
            continue
        args += [spec.flags[0], value]
    res = runner.invoke(app, args)
    assert res.exception is None or isinstance(res.exception, SystemExit), (args, res.exception)
    assert "Traceback" not in res.output
    if res.exit_code != 0:
        assert res.exit_code == 2, (args, res.output)
        assert "error" in res.output.lower() or "usage" in res.output.lower(), res.output
    assert not out.exists() or not any(out.iterdir()), (args, sorted(out.iterdir()))


@pytest.mark.parametrize(
    ("command", "option"),
    [
        (["capture", "--layer", "1"], "--dataset"),
        (["train-sae"], "--dataset"),
        (["train-sae"], "--model"),
    ],
)
def test_a_name_that_is_no_path_nor_hub_name_is_one_line(tmp_path, command, option):
    """Found by the test above: '-inf' made huggingface_hub raise its own validation error."""
    res = runner.invoke(app, [*command, option, "-inf", "--out", str(tmp_path / "run")])
    assert res.exit_code == 2, res.output
    assert "'-inf' is neither an existing local path nor a hub name" in " ".join(res.output.split())
    assert not (tmp_path / "run").exists()
