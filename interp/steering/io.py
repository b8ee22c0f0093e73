"""Loading a steering vector from either of its file formats, chosen by the file's content."""

from pathlib import Path

from interp.steering.vector import SteeringError, SteeringVector, load_vector


def load_any(path: str | Path, model_id: str | None = None) -> SteeringVector:
    """A `.safetensors` vector (`load_vector`) or a control-vector GGUF (`read_gguf`), told
    apart by the file's first bytes (GGUF files begin with b"GGUF")."""
    path = Path(path)
    if not path.is_file():
        raise SteeringError(f"no steering vector at {path} (no such file)")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic == b"GGUF":
        from interp.steering.gguf import read_gguf

        return read_gguf(path, model_id=model_id)
    return load_vector(path)
