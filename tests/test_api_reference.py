"""docs/api.md is generated from the public names' docstrings: regenerated here and compared,
so it cannot drift from the code."""

import importlib
import importlib.util
from pathlib import Path

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "api.md"
_spec = importlib.util.spec_from_file_location(
    "api_reference", ROOT / "experiments" / "api_reference.py"
)
api_reference = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(api_reference)
exports, packages, reference = (
    api_reference.exports,
    api_reference.packages,
    api_reference.reference,
)


def test_docs_api_md_equals_the_generated_reference():
    assert DOC.read_text() == reference(), (
        "docs/api.md is stale: run `python experiments/api_reference.py > docs/api.md`"
    )


def shadowed() -> list[str]:
    """Exports named like a submodule of their own package that they are not: once that
    submodule is imported (by anything), Python sets it as the package's attribute, and
    `package.name` is the module instead of the exported object."""
    found = []
    for package in packages():
        pkg = importlib.import_module(package)
        folder = Path(pkg.__file__).parent
        for name, (_, attribute) in exports(package).items():
            if attribute and (folder / f"{name}.py").exists():
                found.append(f"{package}.{name}")
    return found


def test_every_public_name_is_documented_once():
    """Each name of each package's `_EXPORTS` has exactly one section, the section is what
    `getattr(package, name)` returns (the lazy export resolves to the documented object), and
    no public name lacks a docstring."""
    text = DOC.read_text()
    assert "*(no docstring)*" not in text
    names = packages()
    assert {"interp", "interp.patching", "interp.steering", "sae"} <= set(names)
    for package in names:
        pkg = importlib.import_module(package)
        for name, (module, attribute) in exports(package).items():
            assert text.count(f"### `{package}.{name}` (") == 1, f"{package}.{name}"
            if f"{package}.{name}" in shadowed():
                continue  # test_no_export_is_shadowed_by_a_submodule
            target = importlib.import_module(module)
            assert getattr(pkg, name) is (getattr(target, attribute) if attribute else target)


def test_no_export_is_shadowed_by_a_submodule():
    assert shadowed() == []
