"""`interp align dpo|bipo`: preference training from a steering vector's answers.

    interp align dpo --vector refusal.safetensors --prompts jailbreak --out aligned/
    interp align bipo --vector refusal.safetensors --prompts jailbreak --layer 13 --out bipo/

dpo writes an HF model folder (cfg.json, metrics.json, report.html, pairs.jsonl) through
`interp.align.folder.write_aligned`; its checkpoints live in `.<out>.ckpt` beside --out until
the folder is written (`--resume` continues an interrupted run from there). bipo writes the
model with the trained vector baked in (as `interp align bake` at scale 1) and the vector itself
(bipo.safetensors), through the same writer.
"""

import time
from pathlib import Path
from typing import Any

import typer

from interp.align.cli_output import say, set_threads, write_and_report
from interp.align.train_config import BiPOConfig, DPOConfig, PairOptions
from interp.cli_common import ProgressBar, config_command, derived_epilog

SHOWN = ("loss", "rewards/margins", "rewards/accuracies")


def _stats(metrics: dict[str, float]) -> str:
    return "  ".join(f"{k} {metrics[k]:.3f}" for k in SHOWN if k in metrics)


def _checked_inputs(cfg: PairOptions) -> Any:
    """Fail on bad input before loading anything: threads, vector file, prompt sets."""
    from interp.align.errors import AlignError
    from interp.align.pairs import PROMPT_SETS, prompt_set

    set_threads(cfg.threads)
    if cfg.pairs:
        return None
    if not cfg.vector:
        raise AlignError("give --vector (the pairs are made from its answers) or --pairs FILE")
    for name in (cfg.prompts, cfg.anchors):
        if name != "none" and name not in PROMPT_SETS:
            prompt_set(name)  # a file: read now, so that a bad one fails first
    from interp.models import model_id
    from interp.steering import SteeringError
    from interp.steering.io import load_any

    vector = load_any(cfg.vector)
    mid = model_id(cfg.model)
    if vector.model_id is not None and vector.model_id != mid:  # before any model loads
        raise SteeringError(
            f"the vector was made for model {vector.model_id!r}, not {mid!r}; extract it again "
            "on this model (or pass the right --model)"
        )
    return vector


def _make_pairs(cfg: PairOptions, vector: Any, saved: Path | None, bridge: Any = None) -> Any:
    """The run's pairs: --pairs, a resumed run's own, or made from the vector's answers."""
    from interp.align.pairs import PreferencePairs, preference_pairs, prompt_set

    if cfg.pairs:
        return PreferencePairs.load(cfg.pairs).check()
    if saved is not None and saved.is_file():
        return PreferencePairs.load(saved)
    from interp.models import load_model, model_id

    if bridge is None:
        bridge = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    target = prompt_set(cfg.prompts, cfg.n_prompts, cfg.seed)
    anchors = [] if cfg.anchors == "none" else prompt_set(cfg.anchors, cfg.n_anchors, cfg.seed)[0]
    t0 = time.perf_counter()
    pairs = preference_pairs(
        bridge,
        vector,
        target.prompts,
        cfg.scale,
        signs=target.signs,
        rejected=cfg.rejected,
        anchors=anchors,
        positions=None if cfg.positions == "all" else "prompt",
        max_new_tokens=cfg.max_new_tokens,
        model_id=model_id(cfg.model),
    )
    counts = pairs.counts()
    say(
        f"{len(pairs)} preference pairs ({counts['target']} target of {len(target.prompts)} "
        f"prompts, {counts['anchor']} anchor of {len(anchors)}) in {time.perf_counter() - t0:.1f} s"
    )
    return pairs


def dpo_run(cfg: DPOConfig) -> None:
    """Fine-tune the model with DPO on pairs made from a steering vector; save and evaluate it."""
    import dataclasses
    import shutil

    from interp.align.dpo import train_dpo
    from interp.align.errors import AlignError
    from interp.align.folder import check_out
    from interp.align.report import suite_list
    from interp.models import load_hf

    start = time.perf_counter()
    out = check_out(cfg.out, cfg.force)
    suite_list(cfg.suites)
    ckpt = out.parent / f".{out.name}.ckpt"
    if ckpt.exists() and not cfg.resume:
        raise AlignError(
            f"{ckpt} holds an interrupted run of {out}; pass --resume to continue it, or remove it"
        )
    if cfg.resume and not ckpt.is_dir():
        raise AlignError(f"nothing to resume: {ckpt} does not exist")
    vector = _checked_inputs(cfg)
    pairs = _make_pairs(cfg, vector, ckpt / "pairs.jsonl")
    ckpt.mkdir(parents=True, exist_ok=True)
    pairs.save(ckpt / "pairs.jsonl", overwrite=True)
    model, tokenizer = load_hf(cfg.model, device=cfg.device, dtype=cfg.dtype)
    settings = dataclasses.replace(cfg.dpo, seed=cfg.seed)
    with ProgressBar("DPO", unit="steps") as bar:
        result = train_dpo(
            model,
            tokenizer,
            pairs,
            settings,
            run_dir=ckpt,
            on_step=lambda step, total, m: bar.update(step, total, _stats(m)),
        )
    say(f"trained {result.steps} steps in {result.seconds:.1f} s: {_stats(result.history[-1])}")
    metrics = {"method": "dpo", **result.metrics(), "history": result.history}
    extra = {"pairs.jsonl": (ckpt / "pairs.jsonl").read_bytes()}
    write_and_report(cfg, result.model, tokenizer, metrics, extra_files=extra)
    shutil.rmtree(ckpt, ignore_errors=True)
    say(f"in {time.perf_counter() - start:.1f} s")


def bipo_run(cfg: BiPOConfig) -> None:
    """Train a steering vector with BiPO (the DPO objective, model frozen) on such pairs; write
    the model with the vector baked in (= steered at scale 1) and the vector itself."""
    import dataclasses
    import tempfile

    from interp.align.bipo import train_bipo
    from interp.align.edits import BAKE_ARCHS, bake, model_type
    from interp.align.errors import AlignError
    from interp.align.folder import check_out
    from interp.align.report import suite_list
    from interp.models import load_hf, load_model, model_id

    check_out(cfg.out, cfg.force)
    suite_list(cfg.suites)
    vector = _checked_inputs(cfg)
    model, tokenizer = load_hf(cfg.model, device=cfg.device, dtype=cfg.dtype)
    if model_type(model) not in BAKE_ARCHS:  # before training: the folder holds the baked model
        raise AlignError(
            f"interp align bipo writes the model with its vector baked in, which is exact for the "
            f"model types {', '.join(BAKE_ARCHS)}; this model is {model_type(model)!r}. Train the "
            "vector alone with the Python API (interp.align.train_bipo)"
        )
    bridge = load_model(cfg.model, device=cfg.device, dtype=cfg.dtype)
    pairs = _make_pairs(cfg, vector, None, bridge)  # the bridge that trains makes the pairs too
    settings = dataclasses.replace(cfg.bipo, seed=cfg.seed)
    with ProgressBar("BiPO", unit="steps") as bar:
        result = train_bipo(
            bridge,
            pairs,
            settings,
            model_id=model_id(cfg.model),
            on_step=lambda step, total, m: bar.update(step, total, _stats(m)),
        )
    last = result.history[-1]
    say(f"trained {len(result.history)} steps in {result.seconds:.1f} s (|v| = {last['norm']:.3f})")
    with tempfile.TemporaryDirectory() as tmp:
        vector_bytes = result.vector.save(f"{tmp}/bipo.safetensors").read_bytes()
    metrics = {
        "method": "bipo",
        "seconds": result.seconds,
        "steps": len(result.history),
        "norm": last["norm"],
        "pairs": pairs.counts(),
        "history": result.history,
    }
    baked = bake(model, result.vector, 1.0, model_id=model_id(cfg.model))
    write_and_report(cfg, baked, tokenizer, metrics, extra_files={"bipo.safetensors": vector_bytes})


def register_training(app: typer.Typer) -> None:
    """Add the preference-training commands to `interp align`."""
    app.command("dpo", epilog=derived_epilog(DPOConfig))(config_command(DPOConfig, dpo_run))
    app.command("bipo", epilog=derived_epilog(BiPOConfig))(config_command(BiPOConfig, bipo_run))
