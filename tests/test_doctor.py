"""`interp doctor`: its facts agree with what torch and importlib say, and a broken default model
is reported as a problem (exit 1), not a traceback."""

import importlib.metadata

import torch
from typer.testing import CliRunner

import interp.models
from interp.cli import app
from interp.doctor import DoctorConfig, diagnose


def test_diagnosis_matches_torch_and_installed_versions():
    d = diagnose(DoctorConfig(hub=False))
    assert d.versions["torch"] == importlib.metadata.version("torch") == torch.__version__
    assert d.versions["transformer-lens"] == importlib.metadata.version("transformer-lens")
    assert d.cuda_available == torch.cuda.is_available()
    assert len(d.gpus) == (torch.cuda.device_count() if d.cuda_available else 0)
    assert d.default_device == ("cuda" if torch.cuda.is_available() else "cpu")
    assert d.default_model_loads and d.default_model_error is None
    assert d.hub_reachable is None and d.problems == ()


def test_a_default_model_that_does_not_load_is_a_problem_with_exit_1(monkeypatch):
    def broken(*args, **kwargs):
        raise interp.models.ModelLoadError("config.json is not valid JSON")

    monkeypatch.setattr(interp.models, "load_model", broken)
    result = CliRunner().invoke(app, ["doctor", "--no-hub"])
    assert result.exit_code == 1, result.output
    assert "does not load" in result.output and "config.json is not valid JSON" in result.output
    assert "Traceback" not in result.output
