"""The on-disk cache: bit-exact read-back, resume after a crash, refusal of bad caches."""

import dataclasses
import itertools
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from interp.capture import run as capture_run
from interp.capture.cache import iter_cache, iter_shard_contexts, open_cache
from interp.capture.config import CaptureConfig
from interp.capture.core import capture
from interp.capture.run import capture_to_disk
from interp.data import batched, iter_contexts, iter_texts
from interp.errors import CacheError, DataError, HookNameError, InterpError
from sae.errors import ConfigError

HOOKS = ["blocks.1.hook_resid_post", "blocks.0.hook_mlp_out"]


@pytest.fixture(scope="module")
def cfg(tiny_dirs, tmp_path_factory) -> CaptureConfig:
    """40 contexts of 16 tokens in 5 shards of 8, computed in batches of 3 (not aligned)."""
    return CaptureConfig(
        model=str(tiny_dirs["llama"]),
        layer=(1,),
        hook=("blocks.0.hook_mlp_out",),
        ctx_len=16,
        tokens=16 * 40,
        batch_size=3,
        shard_tokens=16 * 8,
        device="cpu",
        out=str(tmp_path_factory.mktemp("ref") / "acts"),
    )


@pytest.fixture(scope="module")
def reference(cfg) -> Path:
    """An uninterrupted capture."""
    result = capture_to_disk(cfg)
    assert (result.n_shards, result.shards_written, result.exhausted) == (5, 5, False)
    return Path(cfg.out)


def shard_bytes(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard_*.safetensors"))}


def test_config_round_trip_and_validation(cfg):
    assert CaptureConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(InterpError, match="ctx_len must be a positive integer"):
        CaptureConfig(layer=(0,), ctx_len=0)
    with pytest.raises(ConfigError, match=r"CaptureConfig: unknown field\(s\) \['layers'\]"):
        CaptureConfig.from_dict({"layers": [1]})


def test_read_back_is_bit_exact(reference, tiny_models, cfg):
    model = tiny_models["llama"]
    info = open_cache(reference, model=cfg.model, hooks=HOOKS, ctx_len=16)
    assert info.n_tokens == 640 and info.hooks == HOOKS and info.d(HOOKS[0]) == 32
    contexts = iter_contexts(iter_texts("default"), model.tokenizer, 16)
    for tokens, acts in iter_shard_contexts(info):
        expected_tokens = torch.stack(list(itertools.islice(contexts, 8)))
        assert torch.equal(tokens, expected_tokens)
        # Recomputed with the capture's batching (3 contexts a pass), so bitwise equal.
        parts = [capture(model, b, HOOKS) for b in batched(iter(tokens), 3)]
        for h in HOOKS:
            assert torch.equal(acts[h], torch.cat([p[h] for p in parts]))


def test_interrupted_capture_resumes_byte_identical(reference, cfg, tmp_path, monkeypatch):
    out = tmp_path / "acts"
    calls = itertools.count()
    compute = capture_run._compute_shard

    def crash_on_third_shard(*args, **kwargs):
        if next(calls) == 2:
            raise KeyboardInterrupt
        return compute(*args, **kwargs)

    monkeypatch.setattr(capture_run, "_compute_shard", crash_on_third_shard)
    with pytest.raises(KeyboardInterrupt):
        capture_to_disk(dataclasses.replace(cfg, out=str(out)))
    monkeypatch.undo()
    assert len(shard_bytes(out)) == 2
    with pytest.raises(CacheError, match="incomplete.*--resume"):
        open_cache(out)
    with pytest.raises(CacheError, match="already holds an activation cache; pass --resume"):
        capture_to_disk(dataclasses.replace(cfg, out=str(out)))
    calls = []
    resumed = dataclasses.replace(cfg, out=str(out), resume=True)
    result = capture_to_disk(resumed, progress=lambda done, total: calls.append((done, total)))
    assert (result.shards_skipped, result.shards_written) == (2, 3)
    assert shard_bytes(out) == shard_bytes(reference)
    done = [d for d, _ in calls]
    assert done == sorted(done) and calls[-1] == (640, 640) and len(calls) > 5  # per batch
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["shards"] == json.loads((reference / "manifest.json").read_text())["shards"]


@pytest.fixture(scope="module")
def many(cfg, tmp_path_factory) -> tuple[CaptureConfig, Path]:
    """24 shards, and the folder of their uninterrupted capture."""
    many = dataclasses.replace(cfg, tokens=16 * 8 * 24, batch_size=8)
    clean = tmp_path_factory.mktemp("many") / "clean"
    capture_to_disk(dataclasses.replace(many, out=str(clean)))
    return many, clean


def kill_capture(many: CaptureConfig, out: Path, after_shards: int, delay: float) -> None:
    """Start `interp capture` and SIGKILL it `delay` seconds after its `after_shards`-th shard
    file appears (at start-up, before the folder exists, when `after_shards` is 0)."""
    args = [sys.executable, "-m", "interp", "capture", "--model", many.model, "--layer", "1"]
    args += ["--hook", "blocks.0.hook_mlp_out", "--ctx-len", "16", "--tokens", str(many.tokens)]
    args += ["--batch-size", "8", "--shard-tokens", "128", "--device", "cpu", "--out", str(out)]
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    shard = out / f"shard_{after_shards - 1:05d}.safetensors"
    while after_shards and not shard.exists() and proc.poll() is None:
        assert time.monotonic() < deadline, "the capture process wrote no shards"
        time.sleep(0.002)
    time.sleep(delay)
    assert proc.poll() is None, "the capture ended before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


# Kill moments drawn once from a seeded generator (reproducible): at start-up, and at random
# points after random shards, some inside a shard's write, some between a shard and the manifest.
KILL_MOMENTS = [(0, 1.5)] + [
    (rng.randint(1, 16), rng.uniform(0.0, 0.05)) for rng in [random.Random(7)] for _ in range(2)
]


@pytest.mark.slow
@pytest.mark.parametrize(("after_shards", "delay"), KILL_MOMENTS)
def test_killed_process_resumes_byte_identical(many, tmp_path, after_shards, delay):
    """A real crash: SIGKILL a `interp capture` process at a random moment, then --resume."""
    many, clean = many
    killed = tmp_path / "killed"
    kill_capture(many, killed, after_shards, delay)
    n_before = len(shard_bytes(killed)) if killed.exists() else 0
    result = capture_to_disk(dataclasses.replace(many, out=str(killed), resume=True))
    # A shard's file is renamed into place before the manifest lists it, so the kill can land
    # between the two: then the newest file is not trusted and is written again.
    assert n_before < 24 and result.shards_skipped <= n_before
    assert result.shards_skipped + result.shards_written == 24
    if after_shards >= 2:
        assert result.shards_skipped >= 1  # shard 0 was listed before shard 1's file was begun
    assert shard_bytes(killed) == shard_bytes(clean)
    # No temporary file, and the dead capture's lock (which blocked nothing) is gone.
    assert not list(killed.glob(".*"))


def test_corrupt_shard_is_refused_then_repaired(reference, cfg, tmp_path):
    out = tmp_path / "acts"
    shutil.copytree(reference, out)
    path = out / "shard_00001.safetensors"
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CacheError, match="shard_00001.safetensors' is corrupt"):
        list(iter_cache(out, shuffle=False))
    result = capture_to_disk(dataclasses.replace(cfg, out=str(out), resume=True))
    assert (result.shards_written, result.shards_skipped) == (1, 4)
    assert shard_bytes(out) == shard_bytes(reference)


def test_mismatched_or_missing_caches_are_refused(reference, tmp_path):
    with pytest.raises(CacheError, match="captured with model="):
        open_cache(reference, model="gpt2")
    with pytest.raises(CacheError, match=r"no activations for \['blocks.2.hook_resid_post'\]"):
        open_cache(reference, hooks=["blocks.2.hook_resid_post"])
    with pytest.raises(CacheError, match="captured with ctx_len=16, but ctx_len=32"):
        open_cache(reference, ctx_len=32)
    with pytest.raises(CacheError, match="no activation cache at .*interp capture --out"):
        list(iter_cache(tmp_path / "nowhere"))
    broken = tmp_path / "broken"
    shutil.copytree(reference, broken)
    (broken / "shard_00002.safetensors").unlink()
    with pytest.raises(CacheError, match=r"lacks shard files \['shard_00002.safetensors'\]"):
        open_cache(broken)


def test_resume_with_other_options_is_refused(reference, cfg, tmp_path):
    out = tmp_path / "acts"
    shutil.copytree(reference, out)
    changed = dataclasses.replace(cfg, out=str(out), resume=True, ctx_len=32, seed=1)
    with pytest.raises(CacheError, match="ctx_len: 16 -> 32, .*seed: 0 -> 1"):
        capture_to_disk(changed)


def test_resume_can_add_tokens(reference, cfg, tmp_path):
    out = tmp_path / "acts"
    shutil.copytree(reference, out)
    result = capture_to_disk(dataclasses.replace(cfg, out=str(out), resume=True, tokens=16 * 44))
    assert (result.shards_skipped, result.shards_written, result.n_tokens) == (5, 1, 16 * 44)
    old = shard_bytes(reference)
    assert {k: v for k, v in shard_bytes(out).items() if k in old} == old


def test_resume_with_fewer_tokens_needs_force(reference, cfg, tmp_path):
    """Nothing is deleted without --force: a smaller --tokens would drop captured shards."""
    out = tmp_path / "acts"
    shutil.copytree(reference, out)
    fewer = dataclasses.replace(cfg, out=str(out), resume=True, tokens=16 * 20)
    with pytest.raises(CacheError, match="holds 640 tokens but --tokens is 320.*--force"):
        capture_to_disk(fewer)
    assert shard_bytes(out) == shard_bytes(reference)
    result = capture_to_disk(dataclasses.replace(fewer, force=True))
    assert (result.n_shards, result.shards_skipped, result.n_tokens) == (3, 2, 320)
    assert sorted(shard_bytes(out)) == [f"shard_0000{i}.safetensors" for i in range(3)]
    assert open_cache(out).n_tokens == 320


def test_bad_input_leaves_no_files(cfg, tmp_path):
    out = tmp_path / "acts"
    with pytest.raises(HookNameError, match="valid layers are 0..2"):
        capture_to_disk(dataclasses.replace(cfg, out=str(out), layer=(9,)))
    with pytest.raises(DataError, match="does not exist"):
        capture_to_disk(dataclasses.replace(cfg, out=str(out), dataset=str(tmp_path / "x.txt")))
    assert not out.exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.md").write_text("mine")
    with pytest.raises(CacheError, match="not empty and holds no activation cache"):
        capture_to_disk(dataclasses.replace(cfg, out=str(tmp_path / "full")))


def test_a_small_dataset_runs_out(cfg, tmp_path):
    text = tmp_path / "small.txt"
    text.write_text("\n\n".join(["Mary and John went to the park."] * 8))
    out = tmp_path / "acts"
    result = capture_to_disk(dataclasses.replace(cfg, out=str(out), dataset=str(text)))
    assert result.exhausted and 0 < result.n_tokens < cfg.tokens
    assert open_cache(out).n_tokens == result.n_tokens


def test_reader_rows(reference):
    info = open_cache(reference)
    shards = list(iter_shard_contexts(info))
    flat = {h: torch.cat([a[h].reshape(-1, 32) for _, a in shards]) for h in HOOKS}
    plain = list(iter_cache(info, batch_tokens=64, shuffle=False, exclude_bos=False))
    for h in HOOKS:
        assert torch.equal(torch.cat([b[h] for b in plain]), flat[h])
    no_bos = list(iter_cache(info, batch_tokens=1, shuffle=False))
    assert len(no_bos) == info.n_tokens - 40
    shuffled = torch.cat([b[HOOKS[0]] for b in iter_cache(info, batch_tokens=20, seed=3)])
    kept = torch.cat([b[HOOKS[0]] for b in no_bos])
    assert shuffled.shape == kept.shape and not torch.equal(shuffled, kept)
    assert torch.equal(shuffled[shuffled[:, 0].argsort()], kept[kept[:, 0].argsort()])
