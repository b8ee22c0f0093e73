"""`patch_run(cfg)`: what `interp patch` computes, as a library call that returns values and
figures (the CLI prints and writes them)."""

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import plotly.graph_objects as go

from interp.patching.config import PatchConfig
from interp.patching.edges import EdgeResult
from interp.patching.inputs import PatchingError
from interp.patching.result import PatchResult


@dataclass(frozen=True, eq=False)
class PatchRun:
    """A run's result (a grid or the edges), its figures, and the prompts it used."""

    result: PatchResult | EdgeResult
    figures: list[go.Figure]
    description: str
    out: Path

    def top(self, k: int) -> list[tuple[str, float]]:
        if isinstance(self.result, EdgeResult):
            return [(f"{s} -> {r}", v) for s, r, v in self.result.circuit(k)]
        return self.result.top(k)


def output_folder(cfg: PatchConfig) -> Path:
    """--out, or runs/patch-<task or 'prompts'>-<grid>-<method or ablation>."""
    if cfg.out is not None:
        return Path(cfg.out)
    how = f"{cfg.ablate}-ablation" if cfg.ablate != "none" else cfg.method
    return Path("runs") / f"patch-{cfg.task or 'prompts'}-{cfg.grid}-{how}"


def _inputs(model: Any, cfg: PatchConfig):
    """(clean tokens, corrupt tokens, metric, description)."""
    from interp.patching.inputs import prompt_pair, single_token
    from interp.patching.metric import kl_metric, logit_diff_metric, prob_metric
    from interp.patching.tasks import make_task

    if cfg.task is not None:
        if cfg.clean is not None or cfg.corrupt is not None:
            raise PatchingError("pass either --task or --clean/--corrupt, not both")
        task = make_task(model, cfg.task, cfg.pairs, cfg.seed)
        return task.clean, task.corrupt, task.metric, f"task {task.name}: {task.description}"
    if cfg.clean is None or cfg.corrupt is None:
        raise PatchingError(
            "nothing to patch: pass --clean and --corrupt prompts, or --task names|induction|refusal"
        )
    clean, corrupt = prompt_pair(model, cfg.clean, cfg.corrupt, cfg.align)
    if cfg.metric == "kl":
        from interp.patching.exact import forward_no_grad

        metric = kl_metric(forward_no_grad(model, clean), -1)
    elif cfg.answer is None or (cfg.metric == "logit_diff" and cfg.wrong is None):
        need = "--answer and --wrong" if cfg.metric == "logit_diff" else "--answer"
        raise PatchingError(f"--metric {cfg.metric} needs {need} (one token each, e.g. ' Mary')")
    elif cfg.metric == "prob":
        metric = prob_metric(single_token(model, cfg.answer))
    else:
        right = single_token(model, cfg.answer)
        metric = logit_diff_metric(right, single_token(model, cfg.wrong, "wrong answer"))
    return clean, corrupt, metric, f"clean {cfg.clean!r} / corrupt {cfg.corrupt!r}"


def _by_position(cfg: PatchConfig) -> bool | None:
    return {"auto": None, "each": True, "all": False}[cfg.positions]


def patch_run(cfg: PatchConfig, on_progress=None, model: Any = None) -> PatchRun:
    """Load the model (unless given), build the prompt pairs and metric, run the grid with the
    method (or the ablation), and return the result with its figures."""
    from interp.models import load_model
    from interp.patching import figures

    model = load_model(cfg.model, cfg.device, cfg.dtype) if model is None else model
    clean, corrupt, metric, desc = _inputs(model, cfg)
    steps = cfg.steps if cfg.method == "ig" else 0
    out = output_folder(cfg)
    if cfg.grid == "edges":
        if cfg.ablate != "none":
            raise PatchingError("--ablate works on the resid, attn, heads and mlp grids, not edges")
        from interp.patching.edges import edge_attribution, exact_edges

        if cfg.method == "exact":
            res = exact_edges(
                model, clean, corrupt, metric, memory_mb=cfg.memory_mb, on_progress=on_progress
            )
        else:
            res = edge_attribution(model, clean, corrupt, metric, steps=steps)
        return PatchRun(res, [figures.circuit_graph(res, cfg.circuit)], desc, out)
    if cfg.ablate != "none":
        from interp.patching.exact import ablate

        res = ablate(
            model,
            clean,
            metric,
            cfg.grid,
            kind=cfg.ablate,
            reference=corrupt,
            corrupt=corrupt,
            by_position=bool(_by_position(cfg)),
            memory_mb=cfg.memory_mb,
            on_progress=on_progress,
        )
    elif cfg.method == "exact":
        from interp.patching.exact import exact_patch

        res = exact_patch(
            model,
            clean,
            corrupt,
            metric,
            cfg.grid,
            by_position=_by_position(cfg),
            memory_mb=cfg.memory_mb,
            on_progress=on_progress,
        )
    else:
        from interp.patching.attribution import attribution_patch

        res = attribution_patch(
            model, clean, corrupt, metric, cfg.grid, steps=steps, by_position=_by_position(cfg)
        )
    return PatchRun(res, [figures.heatmap(res)], desc, out)


def write_run(run: PatchRun, cfg: PatchConfig) -> Path:
    """The output folder, written atomically: result.json, cfg.json, report.html."""
    from interp.viz.html import write_html
    from sae.fsutil import dump_json, write_dir_atomically

    def write(tmp: Path) -> None:
        dump_json(tmp / "result.json", run.result.to_dict() | {"description": run.description})
        dump_json(tmp / "cfg.json", cfg.to_dict())
        write_html(tmp / "report.html", run.figures, f"interp patch: {run.description}")

    return write_dir_atomically(run.out, write, overwrite=cfg.force)
