"""Train the embedded default model (the "model organism") from scratch, reproducibly.

    python experiments/organism/train.py --out experiments/organism/out

Seeded end to end. Prints the token count, time and device; writes the HF-format model folder
(fp32) to `<out>/model`, `<out>/loss.html` (loss curve) and `<out>/log.json`. `ship.py` then
converts `<out>/model` to fp16 into `interp/organism/weights/`.
"""

import argparse
import json
import math
import random
import time
from pathlib import Path

import plotly.graph_objects as go
import torch
from transformers import AutoTokenizer, LlamaForCausalLM

from interp.organism.architecture import model_config
from interp.organism.corpus import iter_documents
from interp.organism.tokenizer import train_tokenizer


def pack_contexts(docs, tokenizer, n_ctx: int, ctx_len: int) -> torch.Tensor:
    """[n_ctx, ctx_len]: BOS, then whole documents separated by EOS; the last one is cut."""
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    out = torch.empty(n_ctx, ctx_len, dtype=torch.long)
    for i in range(n_ctx):
        ids = [bos]
        while len(ids) < ctx_len:
            ids += tokenizer(next(docs), add_special_tokens=False)["input_ids"] + [eos]
        out[i] = torch.tensor(ids[:ctx_len])
    return out


IGNORE = -100  # label that HF's causal-LM loss skips


def random_repeats(
    n_ctx: int, ctx_len: int, vocab: int, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """(tokens, labels) [n_ctx, ctx_len]: BOS, then random token sequences of 8 to 48 tokens,
    each followed by a copy (induction). Labels keep only the copies: a first copy is
    unpredictable noise, and leaving it out of the loss is what lets the induction circuit form
    within a CPU budget (see docs/organism.md)."""
    tokens = torch.empty(n_ctx, ctx_len, dtype=torch.long)
    labels = torch.empty(n_ctx, ctx_len, dtype=torch.long)
    for i in range(n_ctx):
        parts, masks = [torch.zeros(1, dtype=torch.long)], [torch.full((1,), IGNORE)]
        n = 1
        while n < ctx_len:
            length = int(torch.randint(8, 49, (1,), generator=gen))
            seq = torch.randint(3, vocab, (length,), generator=gen)
            parts += [seq, seq]
            masks += [torch.full((length,), IGNORE), seq]
            n += 2 * length
        tokens[i] = torch.cat(parts)[:ctx_len]
        labels[i] = torch.cat(masks)[:ctx_len]
    return tokens, labels


def grow(model: LlamaForCausalLM, n_layers: int) -> LlamaForCausalLM:
    """The same function with `n_layers` blocks: the trained blocks first, then fresh blocks
    whose output projections (attention o_proj, MLP down_proj) are zero, so each new block
    adds nothing to the residual stream until training moves it (progressive stacking)."""
    grown = LlamaForCausalLM(model_config(model.config.vocab_size, n_layers))
    missing, unexpected = grown.load_state_dict(model.state_dict(), strict=False)
    old = model.config.num_hidden_layers
    assert not unexpected and all(".layers." in k for k in missing), (missing, unexpected)
    with torch.no_grad():
        for block in grown.model.layers[old:]:
            block.self_attn.o_proj.weight.zero_()
            block.mlp.down_proj.weight.zero_()
    return grown


def lr_at(step: int, steps: int, lr: float, warmup: int) -> float:
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return lr * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * progress)))


def train(args) -> dict:
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    torch.set_num_threads(args.threads)
    out = Path(args.out)
    (out / "model").mkdir(parents=True, exist_ok=True)
    if args.init_from:  # continue training a saved organism (same tokenizer)
        tokenizer = AutoTokenizer.from_pretrained(args.init_from)
        model = LlamaForCausalLM.from_pretrained(args.init_from, dtype=torch.float32)
        if model.config.num_hidden_layers < args.layers:
            model = grow(model, args.layers)
        model = model.to(args.device)
    else:
        tokenizer = train_tokenizer(vocab_size=args.vocab, seed=args.seed)
        model = LlamaForCausalLM(model_config(len(tokenizer), args.layers)).to(args.device)
    weights = json.loads(args.weights) if args.weights else None
    model.train()
    n_params = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.95), weight_decay=0.05)
    docs = iter_documents("train", seed=args.seed, weights=weights)
    gen = torch.Generator().manual_seed(args.seed)
    n_rand = round(args.batch * args.repeat_frac)
    log, t0, tokens = [], time.time(), 0
    print(f"device={args.device} params={n_params:,} vocab={len(tokenizer)}", flush=True)
    for step in range(args.stop_after or args.steps):
        # The first --repeat-steps steps are random repeats only, so induction forms early.
        n_rep = args.batch if step < args.repeat_steps else n_rand
        text = pack_contexts(docs, tokenizer, args.batch - n_rep, args.ctx_len)
        rep, rep_labels = random_repeats(n_rep, args.ctx_len, len(tokenizer), gen)
        batch = torch.cat([text, rep]).to(args.device)
        labels = torch.cat([text, rep_labels]).to(args.device)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, args.steps, args.lr, args.warmup)
        loss = model(batch, labels=labels).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        tokens += batch.numel()
        if step % 25 == 0 or step == args.steps - 1:
            elapsed = time.time() - t0
            log.append({"step": step, "tokens": tokens, "loss": loss.item(), "time_s": elapsed})
            print(
                f"step {step} tokens {tokens:,} loss {loss.item():.4f} "
                f"{tokens / elapsed:,.0f} tok/s",
                flush=True,
            )
        if args.save_every and step and step % args.save_every == 0:
            model.save_pretrained(out / f"model_step{step}")
            tokenizer.save_pretrained(out / f"model_step{step}")
    model.save_pretrained(out / "model")
    tokenizer.save_pretrained(out / "model")
    summary = {
        "device": args.device,
        "params": n_params,
        "tokens": tokens,
        "time_s": time.time() - t0,
        "final_loss": log[-1]["loss"],
        "args": vars(args),
    }
    (out / "log.json").write_text(json.dumps({"summary": summary, "log": log}, indent=1))
    fig = go.Figure(go.Scatter(x=[r["tokens"] for r in log], y=[r["loss"] for r in log]))
    fig.update_layout(
        title="Model organism training loss",
        xaxis_title="tokens",
        yaxis_title="cross-entropy (nats)",
    )
    fig.write_html(out / "loss.html", include_plotlyjs="cdn")
    print(json.dumps(summary), flush=True)
    return summary


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="experiments/organism/out")
    p.add_argument("--steps", type=int, default=2500)
    p.add_argument("--batch", type=int, default=16, help="contexts per step")
    p.add_argument("--ctx-len", type=int, default=128)
    p.add_argument("--vocab", type=int, default=2048)
    p.add_argument(
        "--layers",
        type=int,
        default=16,
        help="blocks; with --init-from a shallower model, it is grown to this many",
    )
    p.add_argument("--lr", type=float, default=1.5e-3)
    p.add_argument("--warmup", type=int, default=150)
    p.add_argument(
        "--repeat-frac",
        type=float,
        default=0.125,
        help="fraction of contexts that are random-token repeats (induction)",
    )
    p.add_argument(
        "--repeat-steps",
        type=int,
        default=0,
        help="train on random repeats only for this many first steps (induction warm-up)",
    )
    p.add_argument(
        "--weights",
        default=None,
        help="corpus family weights as JSON, e.g. '{\"review\": 0.3, ...}' (default: the corpus's)",
    )
    p.add_argument(
        "--stop-after",
        type=int,
        default=0,
        help="stop after this many steps, keeping the --steps LR schedule",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--init-from", default=None, help="HF folder of an organism to keep training")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--save-every", type=int, default=250)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    train(p.parse_args())


if __name__ == "__main__":
    main()
