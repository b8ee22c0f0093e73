"""`interp align bake|orthogonalize`: move a steering vector into the weights, exactly.

    interp align bake --vector refusal.safetensors --scale 0.5 --out baked/
    interp align orthogonalize --vector jailbreak.safetensors --layer 13 --out ortho/

Each writes an HF model folder with cfg.json, metrics.json and report.html (the before/after
evaluation of `interp eval --baseline`), and prints the before/after table.
"""

import time
from typing import Any

import typer

from interp.align.cli_output import say, set_threads, write_and_report
from interp.align.config import AlignOptions, BakeConfig, OrthogonalizeConfig
from interp.cli_common import config_command


def _start(cfg: AlignOptions, layers: list[int] | None = None) -> tuple[Any, Any, Any, str]:
    """Check the output folder, the suites, the vector file and its `layers` first; then load
    the HF model. Returns (vector, model, tokenizer, model_id)."""
    from interp.align.errors import AlignError
    from interp.align.folder import check_out
    from interp.align.report import suite_list
    from interp.models import load_hf, model_id
    from interp.steering.io import load_any

    check_out(cfg.out, cfg.force)
    suite_list(cfg.suites)
    if not cfg.vector:
        raise AlignError(
            "--vector is required (a .safetensors from interp steer extract, or a .gguf)"
        )
    vector = load_any(cfg.vector)
    vector.select(layers)  # layers the vector lacks fail before the model loads
    set_threads(cfg.threads)
    mid = model_id(cfg.model)
    model, tokenizer = load_hf(cfg.model, device=cfg.device, dtype=cfg.dtype)
    return vector, model, tokenizer, mid


def bake_run(cfg: BakeConfig) -> None:
    """Bake a steering vector into a bias (= steering at --scale); save and evaluate the model."""
    from interp.align.edits import bake, changed_parameters
    from interp.steering.config import parse_layers

    layers = parse_layers(cfg.layers) if cfg.layers else None
    vector, model, tokenizer, mid = _start(cfg, layers)
    t0 = time.perf_counter()
    edited = bake(model, vector, cfg.scale, layers=layers, model_id=mid)
    seconds = time.perf_counter() - t0
    changed = changed_parameters(model, edited)
    say(
        f"baked {cfg.vector} at scale {cfg.scale:g} into layers "
        f"{list(layers or vector.layers)} ({changed['changed']:,} parameters changed or added, "
        f"{seconds:.2f} s)"
    )
    write_and_report(cfg, edited, tokenizer, {"method": "bake", "seconds": seconds, **changed})


def orthogonalize_run(cfg: OrthogonalizeConfig) -> None:
    """Orthogonalise the weights against a direction (= its ablation); save and evaluate."""
    from interp.align.edits import changed_parameters, orthogonalize
    from interp.steering.config import parse_layers

    chosen = parse_layers(cfg.layer) if cfg.layer else None
    vector, model, tokenizer, mid = _start(cfg, chosen)
    layer = chosen or [vector.layers[len(vector.layers) // 2]]
    t0 = time.perf_counter()
    edited = orthogonalize(model, vector, layer, model_id=mid)
    seconds = time.perf_counter() - t0
    changed = changed_parameters(model, edited)
    say(
        f"orthogonalised the weights against the blocks.{','.join(map(str, layer))} "
        f"direction(s) of {cfg.vector} "
        f"({changed['changed']:,} parameters changed or added, {seconds:.2f} s)"
    )
    metrics = {"method": "orthogonalize", "layer": layer, "seconds": seconds, **changed}
    write_and_report(cfg, edited, tokenizer, metrics)


def register_edits(app: typer.Typer) -> None:
    """Add the weight-edit commands to `interp align`."""
    app.command("bake")(config_command(BakeConfig, bake_run))
    app.command("orthogonalize")(config_command(OrthogonalizeConfig, orthogonalize_run))
