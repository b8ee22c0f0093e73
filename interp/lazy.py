"""Lazy package exports: a package lists its public names, each loaded on first use.

`import interp` and the command line's `--help` then import no torch, and `dir()` still lists
every name, so a notebook's tab completion finds them.
"""

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """(__getattr__, __dir__) for `package`; `exports` maps a name to "module:attribute", or to
    "module" for a submodule."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        module, _, attribute = exports[name].partition(":")
        loaded = importlib.import_module(module)
        return getattr(loaded, attribute) if attribute else loaded

    def __dir__() -> list[str]:
        return sorted({*exports, "__version__"} if package == "interp" else set(exports))

    return __getattr__, __dir__
