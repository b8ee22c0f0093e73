"""The JSON round trip shared by every command's frozen config dataclass (saved as its cfg)."""

import dataclasses
from typing import Any, Self

from interp.errors import InterpError


class JSONConfig:
    """Mixin for frozen dataclasses whose fields are JSON scalars or tuples of them."""

    def to_dict(self) -> dict[str, Any]:
        items = dataclasses.asdict(self).items()  # type: ignore[call-overload]
        return {k: list(v) if isinstance(v, tuple) else v for k, v in items}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        fields = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        unknown = sorted(set(data) - fields)
        if unknown:
            raise InterpError(f"unknown {cls.__name__} fields {unknown}; valid: {sorted(fields)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})
