"""interp: from a model's activations to findings, and from findings to a safer model."""

__version__ = "0.1.0"
__all__ = ["load_model"]


def __getattr__(name: str):
    # Lazy, so that `import interp.organism.corpus` does not pay for importing transformer_lens.
    if name == "load_model":
        from interp.models import load_model

        return load_model
    raise AttributeError(f"module 'interp' has no attribute {name!r}")
