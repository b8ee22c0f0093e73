"""interp's SAE training on a GPU: tokens/s and the fraction of the GPU's bf16 peak it uses.

The model is GPT-2-small-shaped with random weights (12 blocks, d_model 768, 12 heads, MLP
3072, vocab 50257), saved as a local HF folder with the embedded model's tokenizer (its ids are
all < 2048, which changes nothing in the cost), loaded as a TransformerBridge in bf16 as
`interp train-sae` does on CUDA. The SAE is TopK on `blocks.8.hook_resid_post`, d_sae 24576
(32 x 768), k 32, 4096 tokens per Adam step, fp32 master weights under bf16 autocast.

Variants, each a fresh SAE trained on the same tokens:
- `cli`: the `interp train-sae` data path (embedded corpus text -> tokenizer, in a prefetch
  thread on CUDA -> contexts -> capture -> shuffle buffer -> trainer);
- `pretok`: the contexts tokenised beforehand (as from a pre-tokenised dataset), so the CPU
  tokenizer is out of the time;
- a `-sparse` or `-dense` suffix forces that decoder (else `decoder_impl="auto"`, dense on
  CUDA), `-compile` turns on `torch.compile` of the loss.

tokens/s is steady state: training tokens over the host time between the end of step 20 and
the last step (every step ends with a host sync, as the trainer reads its metrics). The
end-to-end figure also counts model warm-up, norm estimation and the first steps.

FLOPs per training token, counted from the shapes (BOS positions are not trained on, so the LM
cost of a context is spread over ctx_len - 1 training tokens):
    LM, blocks 0..L:  (L + 1) * (24 d^2 + 2 d (ctx_len + 1))     [QKVO 8d^2 + MLP 16d^2 per
                      token; causal QK^T and AV: 2 * 2 d * mean attended length (ctx_len+1)/2]
    SAE:              2 d D (encoder) + 2 d D (encoder weight gradient) + 6 k d (sparse
                      decoder forward, and its two gradients)
The dense-decoder variant does 6 d D more per token, which is not counted as useful work.
Fraction of peak = counted FLOPs x tokens/s / peak, against both the measured peak (median of
20 products of two 8192 x 8192 bf16 matrices) and the datasheet's dense bf16 figure.

    python experiments/bench/gpu_sae.py --out gpu_sae.json
"""

import argparse
import dataclasses
import itertools
import json
import os
import tempfile
import time
import warnings
from datetime import date
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

DATASHEET_BF16_TFLOPS = {"H100": 989.4, "H200": 989.4, "A100": 312.0}
"""Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's datasheets (SXM parts)."""


def measured_peak_tflops(n: int = 8192, reps: int = 20) -> float:
    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(reps):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        a @ b
        end.record()
        torch.cuda.synchronize()
        times.append(start.elapsed_time(end) / 1e3)
    return 2 * n**3 / sorted(times)[reps // 2] / 1e12


def datasheet_tflops() -> float | None:
    name = torch.cuda.get_device_name()
    return next((v for k, v in DATASHEET_BF16_TFLOPS.items() if k in name), None)


def flops_per_token(d: int, layer: int, ctx_len: int, d_sae: int, k: int) -> dict[str, float]:
    lm = (layer + 1) * (24 * d * d + 2 * d * (ctx_len + 1)) * ctx_len / (ctx_len - 1)
    sae = 4 * d * d_sae + 6 * k * d
    return {"lm": lm, "sae": sae, "total": lm + sae}


def build_gpt2_small(folder: Path) -> Path:
    from transformers import AutoTokenizer, GPT2Config, GPT2LMHeadModel

    from interp.models import default_model_dir

    torch.manual_seed(0)
    model = GPT2LMHeadModel(GPT2Config(bos_token_id=0, eos_token_id=1, pad_token_id=2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.save_pretrained(folder)
    AutoTokenizer.from_pretrained(default_model_dir()).save_pretrained(folder)
    return folder


class StepClock:
    """on_step callback: host time at the end of every step."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.last: dict = {}

    def __call__(self, step: int, tokens: int, metrics: dict) -> None:
        self.times.append(time.perf_counter())
        self.last = metrics

    def steady_tokens_per_s(self, batch_tokens: int, skip: int = 20) -> float:
        span = self.times[-1] - self.times[skip - 1]
        return (len(self.times) - skip) * batch_tokens / span


def sae_step_ms(
    d_in: int, d_sae: int, k: int, decoder: str, n: int = 4096, reps: int = 30
) -> float:
    """Median ms of one TopK training step alone (AuxK on, bf16 autocast, Adam) on GPU data."""
    from sae.config import SAEConfig
    from sae.registry import build_sae

    cfg = SAEConfig(arch="topk", d_in=d_in, d_sae=d_sae, k=k, device="cuda", decoder_impl=decoder)
    sae = build_sae(cfg, seed=0)
    opt = torch.optim.Adam(sae.parameters(), lr=1e-4)
    xs = [torch.randn(n, d_in, device="cuda") for _ in range(4)]
    dead = torch.zeros(d_sae, dtype=torch.bool, device="cuda")
    dead[::7] = True
    times = []
    for i in range(reps + 5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        with torch.autocast("cuda", dtype=torch.bfloat16):
            terms = sae.loss(xs[i % 4], dead)
            total = terms.mse + terms.auxk / 32
        opt.zero_grad(set_to_none=True)
        total.backward()
        opt.step()
        end.record()
        torch.cuda.synchronize()
        if i >= 5:
            times.append(start.elapsed_time(end))
    return sorted(times)[reps // 2]


def capture_only_tokens_per_s(stream_factory) -> float:
    """Training rows per second of the activation stream alone (capture, BOS drop, shuffle)."""
    torch.cuda.synchronize()
    start, rows = time.perf_counter(), 0
    for batch in stream_factory(0):
        rows += next(iter(batch.values())).shape[0]
    torch.cuda.synchronize()
    return rows / (time.perf_counter() - start)


def profile_variant(model, cfg, hook: str, source, out_dir: Path, steps: int = 40) -> None:
    """torch.profiler over `steps` training steps; tables by self CUDA and self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    short = dataclasses.replace(
        cfg, train=dataclasses.replace(cfg.train, total_tokens=steps * cfg.train.batch_tokens)
    )
    acts = [ProfilerActivity.CPU, ProfilerActivity.CUDA]
    with profile(activities=acts) as prof:
        run_variant(model, short, hook, source, "auto", False)
    for key in ("self_cuda_time_total", "self_cpu_time_total"):
        table = prof.key_averages().table(sort_by=key, row_limit=30)
        (out_dir / f"profile_{key}.txt").write_text(table)
        print(table[:6000])


def run_variant(model, cfg, hook: str, source, decoder: str, compile_: bool) -> dict:
    from interp.train_sae.source import d_in
    from sae.training import train

    sae_cfgs = {
        h: dataclasses.replace(cfg.sae_config(h, width), decoder_impl=decoder)
        for h, width in d_in(model, [hook]).items()
    }
    train_cfg = dataclasses.replace(cfg.train_config(), compile=compile_, checkpoint_every=0)
    clock = StepClock()
    torch.cuda.synchronize()
    start = time.perf_counter()
    result = train(sae_cfgs, train_cfg, source, on_step=clock)
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    return {
        "steady_tokens_per_s": clock.steady_tokens_per_s(cfg.train.batch_tokens),
        "end_to_end_tokens_per_s": result.tokens_seen / seconds,
        "seconds": seconds,
        "train_explained_variance_last_step": clock.last[hook]["explained_variance"],
        "train_l0_last_step": clock.last[hook]["l0"],
        "peak_memory_gib": torch.cuda.max_memory_allocated() / 2**30,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--layer", type=int, default=8)
    p.add_argument("--expansion", type=int, default=32)
    p.add_argument("--k", type=int, default=32)
    p.add_argument("--tokens", type=int, default=2_048_000)
    p.add_argument("--batch-tokens", type=int, default=4096)
    p.add_argument("--ctx-len", type=int, default=128)
    p.add_argument("--batch-size", type=int, default=128, help="contexts per LM forward pass")
    p.add_argument(
        "--variants",
        default="cli,pretok,pretok-sparse,pretok-compile",
        help="cli, pretok; -dense/-sparse force a decoder (else 'auto'), -compile torch.compile",
    )
    p.add_argument("--out", type=Path, default=None)
    p.add_argument("--decompose", action="store_true", help="also time capture and SAE alone")
    p.add_argument("--profile-dir", type=Path, default=None, help="torch.profiler tables here")
    p.add_argument(
        "--model-dir", type=Path, default=None, help="keep the random model here (reused if there)"
    )
    args = p.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("gpu_sae.py needs a CUDA GPU")

    from interp.capture.core import activation_stream
    from interp.data import batched
    from interp.models import load_model
    from interp.train_sae.config import TrainSAEConfig
    from interp.train_sae.source import batch_source, contexts, text_source, train_contexts_used

    with tempfile.TemporaryDirectory() as tmp:
        folder = args.model_dir or Path(tmp) / "gpt2-small-random"
        if not (folder / "config.json").is_file():
            build_gpt2_small(folder)
        model = load_model(str(folder), device="cuda")
        cfg = TrainSAEConfig.from_dict({
            "model": str(folder), "layer": [args.layer], "expansion": args.expansion,
            "ctx_len": args.ctx_len, "batch_size": args.batch_size, "device": "cuda",
            "sae": {"k": args.k},
            "train": {"total_tokens": args.tokens, "batch_tokens": args.batch_tokens},
        })  # fmt: skip
        hook = f"blocks.{args.layer}.hook_resid_post"
        t0 = time.perf_counter()
        ctxs = contexts(model, text_source(cfg), cfg.ctx_len)
        packed = list(itertools.islice(ctxs, train_contexts_used(cfg)))
        tokenise_s = time.perf_counter() - t0

        def pretokenised(skip_tokens: int):
            batch_tokens = cfg.train.batch_tokens
            stream = activation_stream(
                model, batched(iter(packed), cfg.batch_size), [hook], batch_tokens
            )
            return itertools.islice(stream, skip_tokens // batch_tokens, None)

        extra: dict = {}
        if args.decompose:
            extra["capture_only_tokens_per_s"] = capture_only_tokens_per_s(pretokenised)
            print("capture only:", extra["capture_only_tokens_per_s"], flush=True)
            extra["sae_step_ms"] = {
                f"d_sae={D} k={kk} {dec}": sae_step_ms(model.cfg.d_model, D, kk, dec)
                for D, kk in ((768 * args.expansion, args.k), (4 * 768 * args.expansion, 64))
                for dec in ("sparse", "dense")
            }
            print("SAE step alone (ms):", json.dumps(extra["sae_step_ms"]), flush=True)
        if args.profile_dir is not None:
            args.profile_dir.mkdir(parents=True, exist_ok=True)
            profile_variant(model, cfg, hook, pretokenised, args.profile_dir)
        peak = measured_peak_tflops()
        sheet = datasheet_tflops()
        flops = flops_per_token(
            model.cfg.d_model, args.layer, cfg.ctx_len, 768 * args.expansion, args.k
        )
        results = {}
        for name in [v for v in args.variants.split(",") if v]:
            source = batch_source(model, cfg, [hook]) if name == "cli" else pretokenised
            decoder = next((d for d in ("dense", "sparse") if d in name), "auto")
            torch.cuda.reset_peak_memory_stats()
            r = run_variant(model, cfg, hook, source, decoder, "compile" in name)
            r["tflops"] = flops["total"] * r["steady_tokens_per_s"] / 1e12
            r["fraction_of_measured_peak"] = r["tflops"] / peak
            r["fraction_of_datasheet_peak"] = r["tflops"] / sheet if sheet else None
            results[name] = r
            print(name, json.dumps(r), flush=True)

    report = {
        "date": date.today().isoformat(),
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "tokenise_seconds": tokenise_s,
        "tokenise_tokens_per_s": len(packed) * (cfg.ctx_len - 1) / tokenise_s,
        "measured_peak_tflops": peak,
        "datasheet_peak_tflops": sheet,
        "flops_per_token": flops,
        "results": results,
    } | extra
    print(f"\n{report['device']}: measured bf16 matmul peak {peak:.0f} TFLOP/s (datasheet {sheet})")
    print(f"counted FLOPs/token: LM {flops['lm'] / 1e6:.0f}M + SAE {flops['sae'] / 1e6:.0f}M")
    print(f"tokeniser alone: {report['tokenise_tokens_per_s']:,.0f} tokens/s")
    print(
        f"{'variant':24s} {'tokens/s':>12s} {'e2e tok/s':>12s} {'TFLOP/s':>8s} {'%meas':>6s} {'%sheet':>6s} {'EV(train)':>9s}"
    )
    for name, r in results.items():
        sheet_pct = 100 * r["fraction_of_datasheet_peak"] if sheet else float("nan")
        print(
            f"{name:24s} {r['steady_tokens_per_s']:12,.0f} {r['end_to_end_tokens_per_s']:12,.0f} "
            f"{r['tflops']:8.1f} {100 * r['fraction_of_measured_peak']:6.1f} {sheet_pct:6.1f} "
            f"{r['train_explained_variance_last_step']:9.3f}"
        )
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
