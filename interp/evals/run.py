"""Evaluate a model on suites (built-in names or jsonl files), optionally against a baseline.

    report = evaluate_models("default", baseline="path/to/original", suites=("refusal", "bias"))
    report.rows, report.comparisons, report.to_dict()

`evaluate(model, tokenizer, suites)` is the same for models already loaded (a notebook, a test);
both return plain dataclasses, and `interp.evals.figures` draws them.
"""

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from interp.evals.suites import ORGANISM, SUITES, Row, Subject
from interp.evals.userfile import FileSuite, SuiteError, file_rows, load_suite_file

SuiteSpec = str | FileSuite
GROUPS = {"all": tuple(SUITES), "organism": ORGANISM}
"""Names that stand for several suites."""


def parse_suites(specs: Sequence[str]) -> list[SuiteSpec]:
    """Built-in suite names (and the groups 'all', 'organism') and paths of jsonl suite files,
    in order, without repeats; an unknown name is a `SuiteError` listing the valid ones."""
    out: list[SuiteSpec] = []
    for spec in specs or ("all",):
        spec = spec.strip()
        if spec in GROUPS:
            out += [s for s in GROUPS[spec] if s not in out]
        elif spec in SUITES:
            out += [spec] if spec not in out else []
        elif spec.endswith(".jsonl") or Path(spec).exists():
            out.append(load_suite_file(spec))
        else:
            valid = ", ".join([*SUITES, *GROUPS])
            raise SuiteError(
                f"unknown suite {spec!r}; valid: {valid}, or the path of a .jsonl suite file"
            )
    return out


def evaluate(
    model: Any,
    tokenizer: Any,
    suites: Sequence[SuiteSpec] = tuple(SUITES),
    *,
    baseline: Any = None,
    compare_tokens: bool = True,
    seed: int = 0,
    n: int = 100,
    on_suite: Callable[[int, int, str], None] | None = None,
) -> list[Row]:
    """The rows of each suite on one HuggingFace causal LM, in suite order. `baseline` (a
    model sharing the tokenizer) adds the drift suite's KL row. `on_suite(done, total, name)`
    is called before each suite."""
    if n < 1:
        raise SuiteError(f"n (prompts per set) must be at least 1, got {n}")
    model.eval()
    subject = Subject(model, tokenizer, seed, n, baseline, compare_tokens)
    rows: list[Row] = []
    for i, suite in enumerate(suites):
        name = suite if isinstance(suite, str) else suite.name
        if on_suite is not None:
            on_suite(i, len(suites), name)
        rows += SUITES[suite](subject) if isinstance(suite, str) else file_rows(subject, suite)
    if on_suite is not None:
        on_suite(len(suites), len(suites), "")
    return rows


@dataclass(frozen=True)
class Comparison:
    """A row of the model beside the same row of the baseline: the difference of the values and
    whether their 95% intervals overlap (None where the baseline has no such row)."""

    suite: str
    name: str
    model: Row
    baseline: Row | None
    diff: float | None
    overlap: bool | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "suite": self.suite,
            "name": self.name,
            "model": self.model.to_dict(),
            "baseline": None if self.baseline is None else self.baseline.to_dict(),
            "diff": self.diff,
            "overlap": self.overlap,
        }


def compare(rows: Sequence[Row], baseline_rows: Sequence[Row]) -> list[Comparison]:
    """Each of the model's rows beside the baseline's row of the same suite and name."""
    base = {(r.suite, r.name): r for r in baseline_rows}
    out = []
    for row in rows:
        b = base.get((row.suite, row.name))
        if b is None or math.isnan(row.value) or math.isnan(b.value):
            out.append(Comparison(row.suite, row.name, row, b, None, None))
        else:
            diff = row.value - b.value
            out.append(
                Comparison(row.suite, row.name, row, b, diff, row.estimate.overlaps(b.estimate))
            )
    return out


@dataclass
class EvalReport:
    """What `evaluate_models` measured: the model's rows, and with a baseline its rows and the
    side-by-side comparison; `notes` say what was left out and why."""

    model: str
    rows: list[Row]
    baseline: str | None = None
    baseline_rows: list[Row] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "baseline": self.baseline,
            "rows": [r.to_dict() for r in self.rows],
            "baseline_rows": [r.to_dict() for r in self.baseline_rows],
            "comparisons": [c.to_dict() for c in self.comparisons],
            "notes": self.notes,
        }


def same_tokenizer(a: Any, b: Any) -> bool:
    """Whether two tokenizers map every string to the same ids (same vocabulary and specials)."""
    return a.get_vocab() == b.get_vocab() and a.all_special_ids == b.all_special_ids


def evaluate_models(
    model: str = "default",
    baseline: str | None = None,
    suites: Sequence[str] = ("all",),
    *,
    seed: int = 0,
    n: int = 100,
    device: str = "auto",
    dtype: str = "float32",
    on_suite: Callable[[int, int, str], None] | None = None,
) -> EvalReport:
    """Load `model` (and `baseline`) with `interp.models.load_hf` and evaluate them on `suites`.

    A baseline with another tokenizer is compared on text only: the rows are side by side, but
    the per-token rows (LM loss, KL) are left out, and a note says so.
    """
    from interp.models import load_hf

    specs = parse_suites(suites)  # before loading anything: a bad name fails at once
    lm_, tok = load_hf(model, device=device, dtype=dtype)
    report = EvalReport(model, [])
    base = base_tok = None
    if baseline is not None:
        base, base_tok = load_hf(baseline, device=device, dtype=dtype)
        report.baseline = baseline
        if not same_tokenizer(tok, base_tok):
            report.notes.append(
                f"{baseline} has another tokenizer than {model}: compared on text only; the "
                "per-token rows (LM loss, KL to the baseline) are left out"
            )
    shared = base is None or same_tokenizer(tok, base_tok)
    total = len(specs) * (1 if base is None else 2)

    def progress(offset: int) -> Callable[[int, int, str], None] | None:
        if on_suite is None:
            return None
        return lambda done, _, name: on_suite(offset + done, total, name)

    report.rows = evaluate(
        lm_, tok, specs, baseline=base, compare_tokens=shared, seed=seed, n=n, on_suite=progress(0)
    )
    if base is not None:
        report.baseline_rows = evaluate(
            base, base_tok, specs, seed=seed, n=n, on_suite=progress(len(specs))
        )
        if not shared:
            report.rows = [r for r in report.rows if r.unit != "nats/token"]
            report.baseline_rows = [r for r in report.baseline_rows if r.unit != "nats/token"]
        report.comparisons = compare(report.rows, report.baseline_rows)
    return report


def organism_rows(rows: Sequence[Row]) -> list[Row]:
    """The rows of docs/organism.md's planted-behaviour table (those with a target)."""
    return [r for r in rows if r.target is not None]
