"""The aligned-model folder: an HF model folder (weights as safetensors, config, tokenizer) that
`interp.load_model`, `transformers` and every `interp` command open, plus

- `cfg.json`: the options that made it;
- `metrics.json`: the caller's metrics (training curves, timings, parameters changed) and, under
  "eval", the evaluation of the new model beside its baseline (`interp.evals`, the format of
  `interp eval --json`), measured on the folder as written;
- `report.html`: the offline before/after figures of `interp eval --baseline`.

Everything is written into a temporary sibling folder and renamed into place at the end
(`sae.fsutil.write_dir_atomically`): an existing folder is replaced only with `force`, and on any
error nothing is left behind.
"""

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from interp.align.errors import AlignError
from interp.align.report import AlignReport, evaluate_aligned, suite_list, write_report

RESERVED = ("cfg.json", "metrics.json", "report.html", "config.json")


def check_out(out: str | Path, force: bool) -> Path:
    """`out` as a Path, if a model folder may be written there: it does not exist, or `force`
    and it is a folder. Call it before loading or training anything."""
    out = Path(out)
    if not str(out).strip():
        raise AlignError("--out is empty; name the model folder to write")
    if out.exists() or out.is_symlink():
        if not force:
            raise AlignError(f"{out} already exists; pass --force to replace it")
        if not out.is_dir() or out.is_symlink():
            raise AlignError(
                f"{out} is not a folder (the output is a model folder); remove it or choose "
                "another --out"
            )
    if out.parent.exists() and not out.parent.is_dir():
        raise AlignError(f"{out.parent} is not a folder, so {out} cannot be written")
    return out


def _device_dtype(model: Any) -> tuple[str, str]:
    param = next(model.parameters())
    return str(param.device), str(param.dtype).removeprefix("torch.")


def write_aligned(
    out: str | Path,
    model: Any,
    tokenizer: Any,
    *,
    cfg: Mapping[str, Any],
    metrics: Mapping[str, Any],
    baseline: str = "default",
    suites: str = "organism,drift",
    n: int = 100,
    seed: int = 0,
    force: bool = False,
    extra_files: Mapping[str, bytes] | None = None,
    on_suite: Callable[[int, int, str], None] | None = None,
) -> AlignReport:
    """Write the aligned model `model` (HF) with `tokenizer` to the folder `out`, atomically,
    with cfg.json, metrics.json and (unless `suites` is '' or 'none') the evaluation of the
    saved model beside `baseline` (a model spec) in metrics.json and report.html.
    `extra_files` are more files for the folder ({name: bytes}); `on_suite(done, total, name)`
    reports the evaluation's progress."""
    from sae.fsutil import dump_json, write_bytes_atomically, write_dir_atomically

    out = check_out(out, force)
    names = suite_list(suites)
    extra = dict(extra_files or {})
    for name in extra:
        if name in RESERVED or Path(name).name != name or name.startswith("."):
            raise AlignError(
                f"extra file name {name!r} is not allowed: a plain file name other than "
                f"{', '.join(RESERVED)}"
            )
    device, dtype = _device_dtype(model)
    report = AlignReport(out)

    def write(tmp: Path) -> None:
        model.save_pretrained(tmp)
        tokenizer.save_pretrained(tmp)
        dump_json(tmp / "cfg.json", dict(cfg))
        for name, data in extra.items():
            write_bytes_atomically(tmp / name, data)
        evaluation = None
        if names:
            evaluation = evaluate_aligned(
                tmp,
                baseline,
                names,
                n=n,
                seed=seed,
                device=device,
                dtype=dtype,
                on_suite=on_suite,
            )
            evaluation.model = str(out)  # not the temporary folder's name
            write_report(tmp / "report.html", evaluation, f"{out}: before and after alignment")
        report.eval = evaluation
        report.metrics = {**metrics, "eval": None if evaluation is None else evaluation.to_dict()}
        dump_json(tmp / "metrics.json", report.metrics)

    write_dir_atomically(out, write, overwrite=force)
    return report
