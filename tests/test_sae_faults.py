"""Damaged files: SAE folders that `load_sae` must refuse cleanly, and checkpoints that `resume`
must detect and pass over.

load_sae: hypothesis writes corrupt, truncated and wrong-shaped cfg.json and weights files into
an SAE folder. Each is either refused with an SAEError (or OSError) whose message names the file,
or loaded into an SAE that runs; no other exception may escape. Bytes changed inside a tensor's
data cannot be detected (SAELens folders have no checksums) and load.

resume: every file of the newest checkpoint is damaged in turn; resume warns, falls back to the
older checkpoint, and ends bit for bit where a resume from that older checkpoint ends.
"""

import functools
import json
import os
import shutil
import signal
import tempfile
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from json_damage import damaged_json
from safetensors.torch import load as load_bytes
from safetensors.torch import save as save_bytes

from sae import SAEConfig, TrainConfig, resume, train
from sae.checkpoint import latest_checkpoint
from sae.errors import CheckpointError, CheckpointWarning, SAEError
from sae.io import load_sae, save_sae
from sae.registry import build_sae

D_IN, D_SAE, BATCH, STEPS = 8, 16, 32, 10
ARCHS = ("relu", "topk", "jumprelu", "batchtopk")
OUTCOMES: Counter = Counter()
"""(test, kind of damage, outcome) counts of the cases generated here, for reporting."""

pytestmark = pytest.mark.usefixtures("one_thread")


# ---------------------------------------------------------------- load_sae on damaged folders


@functools.cache
def folder_files(arch: str) -> tuple[bytes, bytes]:
    """(cfg.json, sae_weights.safetensors) of a saved SAE of `arch`, as bytes."""
    cfg = SAEConfig(arch=arch, d_in=D_IN, d_sae=D_SAE, k=3, device="cpu", hook_name="h")
    sae = build_sae(cfg, seed=0)
    if arch == "batchtopk":
        sae.loss(torch.randn(BATCH, D_IN, generator=torch.Generator().manual_seed(0)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_sae(sae.eval(), Path(tmp) / "sae")
        return (folder / "cfg.json").read_bytes(), (folder / "sae_weights.safetensors").read_bytes()


def _field_paths(cfg: dict) -> list[tuple[str, ...]]:
    """Every key of cfg.json, of its metadata and of our saved config, as paths."""
    meta = cfg["metadata"]
    return (
        [(k,) for k in cfg]
        + [("metadata", k) for k in meta]
        + [("metadata", "interp_sae_config", k) for k in meta["interp_sae_config"]]
    )


@st.composite
def damaged_cfgs(draw) -> tuple[str, str, bytes]:
    """(arch, kind of damage, cfg.json bytes)."""
    arch = draw(st.sampled_from(ARCHS))
    kinds = ("bytes", "json", "truncate", "replace", "delete")
    kind, text = draw(damaged_json(folder_files(arch)[0], kinds, _field_paths))
    return arch, kind, text


@st.composite
def damaged_weights(draw) -> tuple[str, str, bytes]:
    """(arch, kind of damage, sae_weights.safetensors bytes)."""
    arch = draw(st.sampled_from(ARCHS))
    data = folder_files(arch)[1]
    kind = draw(st.sampled_from(["truncate", "flip", "bytes", "tensors"]))
    if kind == "truncate":
        return arch, kind, data[: draw(st.integers(0, len(data) - 1))]
    if kind == "flip":
        at, mask = draw(st.integers(0, len(data) - 1)), draw(st.integers(1, 255))
        header_end = 8 + int.from_bytes(data[:8], "little")
        where = "header" if at < header_end else "data"
        return arch, f"flip {where}", data[:at] + bytes([data[at] ^ mask]) + data[at + 1 :]
    if kind == "bytes":
        return arch, kind, draw(st.binary(max_size=64))
    tensors = load_bytes(data)
    name = draw(st.sampled_from(sorted(tensors) + ["extra"]))
    change = draw(st.sampled_from(["drop", "shape", "dtype"]))
    if change == "drop":
        tensors.pop(name, None)
    else:
        shape = draw(st.lists(st.integers(0, D_SAE + 1), max_size=3)) if change == "shape" else None
        old = tensors.get(name, torch.zeros(2))
        dtype = draw(st.sampled_from([torch.int32, torch.bool, torch.float16, torch.float64]))
        tensors[name] = (
            torch.ones(shape)
            if shape is not None
            else old.to(dtype if change == "dtype" else old.dtype)
        )
    return arch, f"tensor {change} {name}", save_bytes(tensors)


def _try_load(cfg: bytes, weights: bytes, test: str, kind: str) -> str:
    """Write the folder and load it: 'refused' (SAEError/OSError naming a file of the folder)
    or 'loaded' (and the SAE runs). Any other exception fails the test."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "sae"
        folder.mkdir()
        (folder / "cfg.json").write_bytes(cfg)
        (folder / "sae_weights.safetensors").write_bytes(weights)
        try:
            sae = load_sae(folder)
        except (SAEError, OSError) as err:
            named = [f"{folder / n}" for n in ("cfg.json", "sae_weights.safetensors")]
            if isinstance(err, OSError):
                assert err.filename in named, (kind, err)
            else:
                assert any(str(err).startswith(n) for n in named), (kind, str(err))
            outcome = "refused"
        else:
            x = torch.randn(5, D_IN, generator=torch.Generator().manual_seed(1))
            with torch.no_grad():
                assert sae(x).shape == (5, D_IN)
            outcome = "loaded"
    OUTCOMES[test, " ".join(kind.split(" ")[:2]), outcome] += 1
    return outcome


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(damaged_cfgs())
def test_damaged_cfg_json_is_refused_naming_the_file(case):
    arch, kind, cfg = case
    outcome = _try_load(cfg, folder_files(arch)[1], "cfg", kind)
    if kind in ("bytes", "truncate"):
        assert outcome == "refused"  # never valid JSON objects that name d_in and d_sae


@settings(
    max_examples=200, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)
@given(damaged_weights())
def test_damaged_weights_are_refused_naming_the_file(case):
    arch, kind, weights = case
    outcome = _try_load(folder_files(arch)[0], weights, "weights", kind)
    if kind in ("truncate", "bytes") or kind.startswith(("tensor drop W", "tensor drop b")):
        assert outcome == "refused"


# ---------------------------------------------------------------- resume from damaged checkpoints


def batch_at(i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(i)
    return 3.0 * torch.randn(BATCH, D_IN, generator=g) * torch.linspace(0.3, 2.0, D_IN) + 1.0


def make_batches(skip_tokens: int):
    i = skip_tokens // BATCH
    while True:
        yield {"a": batch_at(i), "b": batch_at(i).flip(-1)}
        i += 1


def sae_cfgs() -> dict[str, SAEConfig]:
    return {
        "a": SAEConfig(arch="batchtopk", d_in=D_IN, d_sae=D_SAE, k=3, device="cpu"),
        "b": SAEConfig(arch="jumprelu", d_in=D_IN, d_sae=D_SAE, device="cpu"),
    }


def train_cfg() -> TrainConfig:
    return TrainConfig(
        total_tokens=BATCH * STEPS, batch_tokens=BATCH, lr=3e-3, lr_warmup_steps=1,
        dead_tokens_window=2 * BATCH, checkpoint_every=2, norm_estimation_batches=2,
    )  # fmt: skip


def assert_identical(a: dict, b: dict) -> None:
    """Bit for bit: the same operations on the same values in the same order."""
    assert a.keys() == b.keys()
    for name in a:
        for (key, p), q in zip(
            a[name].state_dict().items(), b[name].state_dict().values(), strict=True
        ):
            assert torch.equal(p, q), f"{name}.{key}"


@pytest.fixture(scope="module")
def stopped_run(tmp_path_factory):
    """A run stopped by SIGINT after step 6 (checkpoints step 4 and 6 kept), and the result of
    resuming it from step 4 with step 6 deleted."""
    run = tmp_path_factory.mktemp("faults") / "run"

    def interrupt(step, tokens, metrics):
        if step == 6:
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        train(sae_cfgs(), train_cfg(), make_batches, run_dir=run, on_step=interrupt)
    assert sorted(p.name for p in (run / "checkpoints").glob("step_*")) == [
        "step_00000004", "step_00000006",
    ]  # fmt: skip
    older = shutil.copytree(run, run.with_name("older"))
    shutil.rmtree(older / "checkpoints" / "step_00000006")
    (older / "checkpoints" / "LATEST").write_text("step_00000004\n")
    return run, resume(older, make_batches).saes


def damaged_copy(run: Path, dest: Path, rel: str, how: str) -> Path:
    """A copy of the run whose newest checkpoint has file `rel` damaged `how`."""
    copy = shutil.copytree(run, dest)
    path = copy / "checkpoints" / "step_00000006" / rel
    data = path.read_bytes()
    if how == "delete":
        path.unlink()
    elif how == "truncate":
        path.write_bytes(data[: len(data) // 2])
    else:  # 64 float32 values (256 bytes) replaced near the end: the damage
        at = max(0, len(data) - 300)
        path.write_bytes(data[:at] + torch.full((64,), 7.0).numpy().tobytes() + data[at + 256 :])
    return copy


CHECKPOINT_FILES = [
    "trainer.json", "rng.safetensors", "saes/a/sae_config.json", "saes/a/weights.safetensors",
    "saes/b/optimizer.safetensors", "saes/b/firing.safetensors",
]  # fmt: skip


@pytest.mark.parametrize("how", ["overwrite", "truncate", "delete"])
@pytest.mark.parametrize("rel", CHECKPOINT_FILES)
def test_damaged_checkpoint_falls_back_to_the_older_one(tmp_path, stopped_run, rel, how):
    run, from_older = stopped_run
    copy = damaged_copy(run, tmp_path / "run", rel, how)
    with pytest.warns(CheckpointWarning, match="checkpoint skipped") as record:
        result = resume(copy, make_batches)
    message = str(record[0].message)
    assert f"{copy / 'checkpoints' / 'step_00000006'}" in message
    assert f"resuming from the older {copy / 'checkpoints' / 'step_00000004'}" in message
    assert_identical(result.saes, from_older)
    # The resumed run's checkpoints replace the damaged one.
    assert latest_checkpoint(copy).name == f"step_{STEPS:08d}"
    OUTCOMES["checkpoint", how, "recovered"] += 1


def test_edited_trainer_json_fails_its_own_checksum(tmp_path, stopped_run):
    run, from_older = stopped_run
    copy = shutil.copytree(run, tmp_path / "run")
    meta_path = copy / "checkpoints" / "step_00000006" / "trainer.json"
    meta = json.loads(meta_path.read_text())
    meta["tokens_seen"] -= BATCH  # still valid JSON, still a plausible value
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(CheckpointWarning, match="trainer.json does not match its own checksum"):
        result = resume(copy, make_batches)
    assert_identical(result.saes, from_older)


def test_no_valid_checkpoint_names_every_problem(tmp_path, stopped_run):
    run, _ = stopped_run
    copy = damaged_copy(run, tmp_path / "run", "saes/a/weights.safetensors", "overwrite")
    (copy / "checkpoints" / "step_00000004" / "rng.safetensors").unlink()
    with pytest.raises(CheckpointError) as info:
        resume(copy, make_batches)
    text = str(info.value)
    assert "step_00000006/saes/a/weights.safetensors does not match the sha256" in text
    assert "step_00000004/rng.safetensors cannot be read" in text


def test_checkpoint_without_checksums_is_used_with_a_warning(tmp_path, stopped_run):
    """Format 1 (before checksums) still resumes, unverified."""
    run, from_older = stopped_run
    copy = shutil.copytree(run, tmp_path / "run")
    shutil.rmtree(copy / "checkpoints" / "step_00000006")
    meta_path = copy / "checkpoints" / "step_00000004" / "trainer.json"
    meta = json.loads(meta_path.read_text())
    meta = {k: v for k, v in meta.items() if k not in ("files", "trainer_sha256")} | {"format": 1}
    meta_path.write_text(json.dumps(meta))
    with pytest.warns(CheckpointWarning, match="predates checksums"):
        result = resume(copy, make_batches)
    assert_identical(result.saes, from_older)


def test_missing_latest_file_still_finds_the_newest_checkpoint(tmp_path, stopped_run):
    run, from_older = stopped_run
    copy = shutil.copytree(run, tmp_path / "run")
    (copy / "checkpoints" / "LATEST").unlink()
    with warnings.catch_warnings():
        warnings.simplefilter("error", CheckpointWarning)
        result = resume(copy, make_batches)
    assert_identical(result.saes, from_older)  # from step 6 or 4, the run ends the same
