"""Data-parallel training with the gloo backend in 2 CPU processes equals 1 process on the same
global batches. float64 SAEs, so only the all-reduce summation order differs (tolerance 1e-9)."""

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from sae import SAEConfig, TrainConfig, train

D_IN, D_SAE, BATCH, STEPS = 8, 32, 32, 6
ARCHS = ("relu", "topk", "batchtopk", "jumprelu")


def global_batch(i: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 + i)
    return 3.0 * torch.randn(BATCH, D_IN, generator=g, dtype=torch.float64) + 1.0


def configs() -> tuple[dict[str, SAEConfig], TrainConfig]:
    saes = {
        a: SAEConfig(arch=a, d_in=D_IN, d_sae=D_SAE, k=3, dtype="float64", device="cpu")
        for a in ARCHS
    }
    cfg = TrainConfig(
        total_tokens=BATCH * STEPS, batch_tokens=BATCH, lr=1e-2, dead_tokens_window=BATCH,
        norm_estimation_batches=2, checkpoint_every=0,
    )  # fmt: skip
    return saes, cfg


def make_batches(shard: tuple[int, int] | None):
    """Global batches, or, with shard=(rank, world), only this rank's rows."""

    def batches(skip_tokens: int):
        for i in range(skip_tokens // BATCH, STEPS):
            x = global_batch(i)
            if shard is not None:
                rank, world = shard
                x = x.chunk(world)[rank]
            yield dict.fromkeys(ARCHS, x)

    return batches


def _worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ |= {
        "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "RANK": str(rank),
        "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank),
    }  # fmt: skip
    torch.set_num_threads(1)
    saes, cfg = configs()
    results = {}
    for mode, shard in (("global", None), ("pre_sharded", (rank, world))):
        result = train(saes, cfg, make_batches(shard))  # the first call initialises gloo
        assert dist.get_world_size() == world
        results[mode] = {
            "state": {n: s.state_dict() for n, s in result.saes.items()},
            "metrics": result.last_metrics,
        }
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_gloo_ranks_match_one_process(tmp_path, monkeypatch):
    """Both batch forms: every rank reads the global batch and takes its shard, or the source
    already yields each rank's shard."""
    for var in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(var, raising=False)
    old_threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        saes, cfg = configs()
        single = train(saes, cfg, make_batches(None))
    finally:
        torch.set_num_threads(old_threads)
    out = tmp_path / "rank0.pt"
    mp.spawn(_worker, args=(2, _free_port(), str(out)), nprocs=2, join=True)
    for mode, multi in torch.load(out, weights_only=True).items():
        for name, sae in single.saes.items():
            for key, value in sae.state_dict().items():
                torch.testing.assert_close(
                    multi["state"][name][key], value, atol=1e-9, rtol=1e-9,
                    msg=f"{mode}: {name}.{key}",
                )  # fmt: skip
            for key, value in single.last_metrics[name].items():
                got = multi["metrics"][name][key]
                assert got == pytest.approx(value, rel=1e-9, abs=1e-12), (mode, name, key)
