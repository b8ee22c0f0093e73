"""Options come from configs: one declaration per setting, and the CLI's error boundary.

- a field added to a library config is a command option, with its docstring as help, and is
  saved in cfg.json, with no other edit;
- `interp train-sae --help` lists every SAEConfig and TrainConfig field (as an option, or among
  the fields the command sets itself);
- `interp --help` and every command's `--help` import no torch, transformers or transformer_lens;
- a user error is one line; a bug keeps its traceback.
"""

import dataclasses
import json
import re
import subprocess
import sys
from dataclasses import dataclass, field

import pytest
from typer.testing import CliRunner

from interp.cli import app
from interp.cli_common import build_config, config_command, option_specs
from interp.config import JSONConfig
from interp.train_sae.config import TrainSAEConfig
from sae.config import SAEConfig, TrainConfig

runner = CliRunner()
WIDE = {"COLUMNS": "400", "NO_COLOR": "1", "TERM": "dumb"}


@dataclass(frozen=True)
class TrainConfigPlus(TrainConfig):
    """A library config with one more field, as a developer would add it."""

    warmup_shape: float = 0.5
    """Curvature of the warm-up, a field nobody declared anywhere else."""


@dataclass(frozen=True)
class Command(JSONConfig):
    """A command that nests the extended library config."""

    model: str = "default"
    """Which model."""
    train: TrainConfigPlus = field(default_factory=lambda: TrainConfigPlus(lr=4e-3))
    """How to train."""


def _plain(text: str) -> str:
    return " ".join(re.sub(r"[│╭╮╰╯─]", " ", text).split())


def test_a_new_library_field_is_an_option_with_its_docstring_and_is_saved():
    seen = []
    command = config_command(Command, seen.append)
    import typer

    sub = typer.Typer()
    sub.command("go")(command)
    sub.command("other")(lambda: None)
    help_text = _plain(runner.invoke(sub, ["go", "--help"], env=WIDE).output)
    assert "--warmup-shape" in help_text
    assert "Curvature of the warm-up, a field nobody declared anywhere else." in help_text
    res = runner.invoke(sub, ["go", "--warmup-shape", "0.7", "--lr", "1e-3"])
    assert res.exit_code == 0, res.output
    (cfg,) = seen
    assert cfg.train.warmup_shape == 0.7 and cfg.train.lr == 1e-3
    assert cfg.train.batch_tokens == TrainConfig().batch_tokens  # untouched: the default
    saved = json.loads(json.dumps(cfg.to_dict()))
    assert saved["train"]["warmup_shape"] == 0.7
    assert Command.from_dict(saved) == cfg


def test_train_sae_help_lists_every_library_field():
    help_text = _plain(runner.invoke(app, ["train-sae", "--help"], env=WIDE).output)
    derived = TrainSAEConfig.DERIVED
    flags = {s.path: s.flags[0] for s in option_specs(TrainSAEConfig)}
    for prefix, cls in (("sae", SAEConfig), ("train", TrainConfig)):
        for f in dataclasses.fields(cls):
            path = (prefix, f.name)
            if ".".join(path) in derived:
                assert f"{prefix}.{f.name}:" in help_text, (
                    f"{path} not listed as set by the command"
                )
            else:
                assert flags[path] in help_text, f"{flags[path]} missing from --help"
    assert "--sae-dtype" in help_text and "--tokens" in help_text  # a collision and an alias


def test_command_defaults_are_the_tested_ones():
    cfg = build_config(TrainSAEConfig, {})
    assert cfg == TrainSAEConfig()
    assert (cfg.sae.arch, cfg.sae.k, cfg.train.lr, cfg.train.total_tokens) == (
        "topk",
        16,
        4e-3,
        3_000_000,
    )
    assert cfg.layers == (12,)
    train = cfg.train_config()
    assert train.warmup_steps == max(1, (3_000_000 // 4096) // 100)
    assert train.sparsity_steps == (3_000_000 // 4096) // 20
    assert train.dead_window == 750_000


def test_options_parse_into_nested_fields():
    values = {
        "layer": ["4,8", "12"],
        "train__total_tokens": 400_000,
        "train__adam_betas": "0.8,0.99",
        "train__grad_clip_norm": None,
        "sae__k": 32,
    }
    cfg = build_config(TrainSAEConfig, values)
    assert cfg.layer == (4, 8, 12) and cfg.train.adam_betas == (0.8, 0.99)
    assert cfg.train.grad_clip_norm is None and cfg.sae.k == 32
    assert TrainSAEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_help_imports_no_heavy_library():
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from interp.cli import app\n"
        "for args in ([], ['capture'], ['train-sae'], ['organism', 'eval']):\n"
        "    r = CliRunner().invoke(app, args + ['--help'])\n"
        "    assert r.exit_code == 0, (args, r.output)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'transformer_lens') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


def test_a_bug_keeps_its_traceback_and_a_user_error_is_one_line(monkeypatch):
    import interp.train_sae.run as run_module

    def bug(cfg, on_step=None):
        raise KeyError("internal")

    monkeypatch.setattr(run_module, "train_sae_run", bug)
    res = runner.invoke(app, ["train-sae", "--layer", "1"])
    assert isinstance(res.exception, KeyError)  # not swallowed into an "error:" line

    def disk_full(cfg, on_step=None):
        raise OSError(28, "No space left on device", "/tmp/x/cfg.json")

    monkeypatch.setattr(run_module, "train_sae_run", disk_full)
    res = runner.invoke(app, ["train-sae", "--layer", "1"])
    assert res.exit_code == 2
    assert "error: No space left on device: /tmp/x/cfg.json" in res.output
    assert "Traceback" not in res.output


def test_bad_option_values_name_the_option():
    res = runner.invoke(app, ["train-sae", "--k", "many"], env=WIDE)
    assert res.exit_code == 2 and "--k" in res.output and "expected int" in res.output
    res = runner.invoke(app, ["train-sae", "--normalize-activations", "some"], env=WIDE)
    assert res.exit_code == 2 and "expected_average_only_in" in res.output
    res = runner.invoke(app, ["train-sae", "--adam-betas", "0.9"], env=WIDE)
    assert res.exit_code == 2 and "takes 2 comma-separated values" in _plain(res.output)


@pytest.mark.parametrize("bad", [{"sae": {"k": 0}}, {"train": {"lr": -1.0}}, {"ctx_len": 1}])
def test_invalid_values_are_refused_by_the_config(bad):
    from interp.errors import InterpError
    from sae.errors import SAEError

    with pytest.raises((InterpError, SAEError)):
        TrainSAEConfig.from_dict(bad)


def test_dir_lists_the_api_and_every_name_resolves():
    import interp

    names = dir(interp)
    assert {"load_model", "TrainSAEConfig", "train_sae_run", "intervene", "metrics"} <= set(names)
    for name in names:
        assert getattr(interp, name) is not None, name
