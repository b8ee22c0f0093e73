"""Command configs: the JSON round trip every command's frozen config dataclass uses (saved as
its `cfg.json`), and the one check of what may change when a run resumes.

`JSONConfig` is the SAE package's mixin (`sae.config.JSONConfig`), so that `SAEConfig` and
`TrainConfig` nest inside a command's config and round-trip with it.
"""

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

from sae.config import JSONConfig

__all__ = [
    "DecodeErrors",
    "Dtype",
    "Float32ModelOptions",
    "JSONConfig",
    "ModelOptions",
    "TextSource",
    "config_diff",
]

Dtype = Literal["auto", "float32", "bfloat16", "float16"]
"""A model dtype option: 'auto' is bfloat16 on GPU and float32 on CPU."""

DecodeErrors = Literal["strict", "replace", "skip"]
"""What a text reader does with an undecodable line of a file: stop with an error naming the file
and line ("strict"), read it with U+FFFD for the bad bytes ("replace"), or drop it ("skip")."""


@dataclass(frozen=True)
class ModelOptions(JSONConfig):
    """The model options every command that loads a model shares (its config subclasses this;
    a command with another default redeclares the field, and keeps this docstring unless it
    gives its own)."""

    model: str = "default"
    """'default' (the embedded model), a local HF model folder, or a hub name."""
    device: str = "auto"
    """'auto' (CUDA if available, else CPU), 'cpu', 'cuda', 'cuda:N'."""
    dtype: Dtype = "auto"
    """Model dtype; 'auto' is bfloat16 on GPU, float32 on CPU."""


@dataclass(frozen=True)
class Float32ModelOptions(ModelOptions):
    """`ModelOptions` for commands that measure small differences (patching, explainers,
    steering, evaluations): float32 by default on every device."""

    dtype: Dtype = "float32"
    """Model dtype; float32 by default on every device, the precision this command's figures
    and targets were measured in ('auto' is bfloat16 on GPU)."""


def _flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def config_diff(saved: dict[str, Any], asked: dict[str, Any], allowed: Iterable[str]) -> list[str]:
    """The settings (dotted paths into nested configs) that differ between a run's saved config
    and the one asked for, leaving out `allowed`, as 'name: saved -> asked' lines."""
    allowed = set(allowed)
    old, new = _flat(saved), _flat(asked)
    return [
        f"{key}: {old.get(key)!r} -> {new.get(key)!r}"
        for key in sorted(set(old) | set(new))
        if key not in allowed and old.get(key) != new.get(key)
    ]


class TextSource(NamedTuple):
    """Where a run's text comes from: enough to read the same documents in the same order again
    (recorded in an activation cache's manifest, so that its provenance can be checked)."""

    dataset: str = "default"
    split: str = "train"
    text_field: str = "text"
    seed: int = 0
    decode_errors: DecodeErrors = "strict"

    def texts(self) -> Iterator[str]:
        """The documents, in order (`interp.data.iter_texts`)."""
        from interp.data import iter_texts

        return iter_texts(
            self.dataset,
            split=self.split,
            seed=self.seed,
            text_field=self.text_field,
            decode_errors=self.decode_errors,
        )

    def check(self) -> None:
        """`DataError` now, before any work, if the source cannot be read."""
        from interp.data import check_source

        check_source(
            self.dataset,
            split=self.split,
            text_field=self.text_field,
            decode_errors=self.decode_errors,
        )
