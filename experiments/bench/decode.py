"""Timing of the dense and sparse (embedding_bag) decoder paths of TopK SAEs.

    python experiments/bench/decode.py [--threads 1]

prints, per shape, milliseconds for the decoder alone (forward + backward) and for a whole
training step (`loss` + backward) with each `decoder_impl`. docs/sae.md records the results
that set `sae.sparse.use_sparse_decoder`.
"""

import argparse
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F

from sae.config import SAEConfig
from sae.registry import build_sae

SHAPES = [  # (tokens, d_sae, d_in, k)
    (1024, 256, 64, 8),
    (1024, 256, 64, 32),
    (1024, 1024, 128, 32),
    (1024, 1024, 128, 128),
    (4096, 4096, 512, 32),
    (4096, 4096, 512, 256),
    (4096, 4096, 512, 512),
    (2048, 16384, 768, 64),
]


def best_ms(fn: Callable[[], None], repeats: int = 3) -> float:
    """Fastest of `repeats` timed calls after one warm-up call, in milliseconds."""
    fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * min(times)


def decoder_ms(n: int, d_sae: int, d_in: int, k: int) -> dict[str, float]:
    """Decoder forward + backward, dense scatter+matmul against embedding_bag."""
    W = torch.randn(d_sae, d_in, requires_grad=True)
    values, indices = torch.randn(n, d_sae).topk(k, dim=-1)
    values = values.relu().requires_grad_()
    grad = torch.randn(n, d_in)

    def dense() -> None:
        acts = torch.zeros(n, d_sae).scatter(-1, indices, values)
        (acts @ W).backward(grad)

    def sparse() -> None:
        F.embedding_bag(indices, W, per_sample_weights=values, mode="sum").backward(grad)

    return {"dense": best_ms(dense), "sparse": best_ms(sparse)}


def step_ms(n: int, d_sae: int, d_in: int, k: int, arch: str = "topk") -> dict[str, float]:
    """TopK `loss` + backward with about 10% of latents dead (so AuxK runs), per impl."""
    x = torch.randn(n, d_in)
    dead = torch.rand(d_sae) < 0.1
    out = {}
    for impl in ("dense", "sparse"):
        cfg = SAEConfig(arch=arch, d_in=d_in, d_sae=d_sae, k=k, device="cpu", decoder_impl=impl)
        sae = build_sae(cfg, seed=0)

        def step(sae=sae) -> None:
            terms = sae.loss(x, dead)
            (terms.mse + terms.auxk / 32).backward()

        out[impl] = best_ms(step)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"threads={args.threads}")
    print("tokens d_sae d_in k | decoder dense/sparse ms | topk step dense/sparse ms")
    for shape in SHAPES:
        dec, step = decoder_ms(*shape), step_ms(*shape)
        print(
            " ".join(map(str, shape)),
            f"| {dec['dense']:.1f} / {dec['sparse']:.1f}",
            f"| {step['dense']:.1f} / {step['sparse']:.1f}",
        )


if __name__ == "__main__":
    main()
