"""The learning-rate sweep behind train-sae's default lr (docs/sae.md).

Captures `--batches` batches of 4,096 activations at one hook of a model (the embedded one by
default) with train-sae's own live stream, then trains one SAE per (architecture, lr) with
`sae.training.train` on the first `--steps` batches and reports explained variance and L0 on
the last 20 batches, which no SAE trained on. d_sae 1024 and k 16 unless given, one torch thread.

    python experiments/bench/sae_lr.py --layer 8 --batches 60 --steps 40
    python experiments/bench/sae_lr.py --layer 12 --batches 250 --steps 230 \
        --archs topk,relu,jumprelu,batchtopk --lrs 1e-3,4e-3
    python experiments/bench/sae_lr.py --layer 8 --batches 264 --steps 244 --lrs 4e-3 \
        --clips none,0.25,1,4

`--clips` sets `TrainConfig.grad_clip_norm` ('none': off; default 1, the trainer's default).
`--init-scales` sets `SAEConfig.encoder_init_scale` (default 0.5, its default); `--seeds` runs
each setting from several initialisations (the same activations):

    python experiments/bench/sae_lr.py --layer 8 --batches 264 --steps 40 --lrs 4e-3 \
        --init-scales 1,0.5,0.3,0.1 --seeds 0,1,2
"""

import argparse
import itertools

import torch

from interp.models import load_model
from interp.train_sae.config import TrainSAEConfig
from interp.train_sae.source import batch_source
from sae import SAEConfig, TrainConfig, build_sae, metrics, train

BATCH, HELD_OUT = 4096, 20


def capture(model_spec: str, layer: int, n_batches: int) -> torch.Tensor:
    """[n_batches * 4096, d_model] rows of blocks.<layer>.hook_resid_post, train-sae's stream."""
    cfg = TrainSAEConfig.from_dict(
        {
            "model": model_spec,
            "layer": [layer],
            "train": {"total_tokens": BATCH * n_batches, "batch_tokens": BATCH},
        }
    )
    model = load_model(model_spec, device="cpu", dtype="float32")
    hook = f"blocks.{layer}.hook_resid_post"
    rows = [b[hook] for b in itertools.islice(batch_source(model, cfg, [hook])(0), n_batches)]
    return torch.cat(rows)


def held_out_ev(
    x: torch.Tensor,
    arch: str,
    lr: float,
    steps: int,
    clip: float | None = 1.0,
    *,
    init_scale: float = 0.5,
    seed: int = 0,
    d_sae: int = 1024,
    k: int = 16,
) -> tuple[float, float]:
    """(explained variance, L0) on the held-out rows of an SAE trained on the first steps."""
    train_x, test_x = x[: steps * BATCH], x[-HELD_OUT * BATCH :]
    sae_cfg = SAEConfig(
        arch=arch, d_in=x.shape[1], d_sae=d_sae, k=k, device="cpu", encoder_init_scale=init_scale
    )
    cfg = TrainConfig(
        total_tokens=steps * BATCH,
        batch_tokens=BATCH,
        lr=lr,
        lr_warmup_steps=None,  # 1% of the steps, at least 1
        lr_decay_fraction=0.2,
        dead_tokens_window=10_000_000,
        checkpoint_every=0,
        grad_clip_norm=clip,
        seed=seed,
    )
    result = train(
        build_sae(sae_cfg, seed=seed), cfg, lambda skip: iter(train_x[skip:].split(BATCH))
    )
    sae = next(iter(result.saes.values()))
    with torch.no_grad():
        x_hat, acts = sae(test_x), sae.encode(test_x)
    return metrics.explained_variance(test_x, x_hat), metrics.l0(acts)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--model", default="default")
    p.add_argument("--layer", type=int, default=12)
    p.add_argument("--batches", type=int, default=250, help="batches captured (last 20 held out)")
    p.add_argument("--steps", type=int, default=230, help="training steps (<= batches - 20)")
    p.add_argument("--archs", default="topk")
    p.add_argument("--lrs", default="1e-3,2e-3,4e-3,8e-3")
    p.add_argument("--clips", default="1", help="gradient-norm clips, 'none' for off")
    p.add_argument(
        "--init-scales", default="0.5", help="encoder_init_scale values (topk, batchtopk)"
    )
    p.add_argument("--seeds", default="0", help="initialisation seeds")
    p.add_argument("--d-sae", type=int, default=1024)
    p.add_argument("--k", type=int, default=16)
    args = p.parse_args()
    if args.steps > args.batches - HELD_OUT:
        p.error(f"--steps must be <= --batches - {HELD_OUT} = {args.batches - HELD_OUT}")
    torch.set_num_threads(1)
    x = capture(args.model, args.layer, args.batches)
    print(
        f"blocks.{args.layer}.hook_resid_post, {args.steps} steps, held-out rows {HELD_OUT * BATCH}"
    )
    clips = [None if c == "none" else float(c) for c in args.clips.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    sizes = {"d_sae": args.d_sae, "k": args.k}
    print(f"d_sae {args.d_sae}, k {args.k}; EV per seed {seeds}, then their mean")
    for arch, lr, clip, scale in itertools.product(
        args.archs.split(","),
        map(float, args.lrs.split(",")),
        clips,
        map(float, args.init_scales.split(",")),
    ):
        runs = [
            held_out_ev(x, arch, lr, args.steps, clip, init_scale=scale, seed=seed, **sizes)
            for seed in seeds
        ]
        evs = " ".join(f"{ev:.4f}" for ev, _ in runs)
        mean_ev = sum(ev for ev, _ in runs) / len(runs)
        mean_l0 = sum(l0 for _, l0 in runs) / len(runs)
        print(
            f"{arch:10s} lr {lr:.0e}  clip {clip}  init {scale}  EV {evs}  mean {mean_ev:.4f}  "
            f"L0 {mean_l0:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
