"""`interp doctor`: what this installation has and can reach, as plain values.

`diagnose()` returns a `Diagnosis`: the versions of the packages the toolkit rests on, the
devices torch sees (CUDA with each GPU's name and memory, or none), whether the embedded default
model loads (and how long it took), and whether hub names can be reached. Nothing is printed;
the CLI renders it.
"""

import importlib.metadata
import platform
import time
from dataclasses import dataclass, field

from interp.config import JSONConfig

PACKAGES = (
    "interp",
    "torch",
    "transformers",
    "transformer-lens",
    "sae-lens",
    "safetensors",
    "shap",
    "lime",
    "plotly",
    "typer",
)
"""The distributions whose versions `interp doctor` reports."""


@dataclass(frozen=True)
class DoctorConfig(JSONConfig):
    """Options of `interp doctor`."""

    model: bool = True
    """Load and run the embedded default model (about 5 s, mostly importing transformer_lens)."""
    hub: bool = True
    """Probe whether the Hugging Face hub answers (at most 3 s when offline)."""


@dataclass(frozen=True)
class GPU:
    index: int
    name: str
    memory_gib: float


@dataclass(frozen=True)
class Diagnosis:
    python: str
    platform: str
    versions: dict[str, str | None]
    """Distribution name -> installed version (None when not installed)."""
    torch_build: str
    """torch's CUDA build ('cpu' for a CPU-only wheel, else the CUDA version it was built for)."""
    cuda_available: bool
    gpus: tuple[GPU, ...]
    cpu_threads: int
    default_device: str
    """What `--device auto` resolves to here."""
    default_model_loads: bool
    default_model_seconds: float | None
    default_model_error: str | None
    hub_reachable: bool | None
    """None when not probed."""
    problems: tuple[str, ...] = field(default=())
    """One line per thing that would stop a command from working."""


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def diagnose(cfg: DoctorConfig = DoctorConfig()) -> Diagnosis:
    """Check this installation: versions, devices, the default model, the hub (3 s probe)."""
    import torch

    from interp.models import hub_reachable, load_model
    from sae.device import resolve_device

    versions = {dist: _version(dist) for dist in PACKAGES}
    cuda = torch.cuda.is_available()
    gpus = tuple(
        GPU(
            i,
            torch.cuda.get_device_name(i),
            torch.cuda.get_device_properties(i).total_memory / 2**30,
        )
        for i in range(torch.cuda.device_count() if cuda else 0)
    )
    problems = [f"{dist} is not installed" for dist, v in versions.items() if v is None]
    if torch.version.cuda is not None and not cuda:
        problems.append(
            f"torch was built for CUDA {torch.version.cuda} but sees no GPU: commands run on the "
            "CPU (a CPU wheel is smaller: pip install torch --index-url "
            "https://download.pytorch.org/whl/cpu)"
        )
    loads, seconds, error = False, None, None
    if cfg.model:
        start = time.perf_counter()
        try:
            model = load_model("default", device="cpu")
            model(torch.tensor([[0, 5, 6]]))
            loads, seconds = True, time.perf_counter() - start
        except Exception as err:  # noqa: BLE001 - reported, not raised: this is the diagnosis
            error = f"{type(err).__name__}: {err}"
            problems.append(f"the default model does not load: {error}")
    reachable = hub_reachable() if cfg.hub else None
    return Diagnosis(
        python=platform.python_version(),
        platform=platform.platform(),
        versions=versions,
        torch_build=f"cuda {torch.version.cuda}" if torch.version.cuda else "cpu",
        cuda_available=cuda,
        gpus=gpus,
        cpu_threads=torch.get_num_threads(),
        default_device=str(resolve_device("auto")),
        default_model_loads=loads,
        default_model_seconds=seconds,
        default_model_error=error,
        hub_reachable=reachable,
        problems=tuple(problems),
    )
