"""Forward passes -> activations: in memory (`capture`, `activation_stream`), or into a sharded,
resumable on-disk cache (`capture_to_disk`, read back with `open_cache` / `iter_cache`).

Names load on first use, so reading `CaptureConfig` for `--help` imports no torch.
"""

from interp.lazy import lazy_exports

_EXPORTS = {
    "capture": "interp.capture.core:capture",
    "activation_stream": "interp.capture.core:activation_stream",
    "iter_captures": "interp.capture.core:iter_captures",
    "CaptureConfig": "interp.capture.config:CaptureConfig",
    "capture_to_disk": "interp.capture.run:capture_to_disk",
    "open_cache": "interp.capture.cache:open_cache",
    "iter_cache": "interp.capture.cache:iter_cache",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
