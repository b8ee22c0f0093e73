"""The config of `interp organism eval` (imports no torch); the command itself is
`interp.evals.cli.organism_run`."""

from dataclasses import dataclass

from interp.config import Float32ModelOptions


@dataclass(frozen=True)
class OrganismEvalConfig(Float32ModelOptions):
    """Options of `interp organism eval`."""

    seed: int = 0
    """Seed for drawing the held-out prompts."""
    json: str | None = None
    """Also write the table as JSON to this file (the format of `interp eval --json`)."""
    force: bool = False
    """Overwrite --json if it exists."""
    threads: int | None = None
    """CPU threads for torch (default: torch's own choice); 1 is fastest on a busy machine."""
