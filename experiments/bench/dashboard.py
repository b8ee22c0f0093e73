"""Speed of `interp dashboard`: the whole command (load, one pass, labels, writing) on an SAE.

    python experiments/bench/dashboard.py --sae /tmp/dash16/saes/blocks.12.hook_resid_post \
        --tokens 1000000

Prints the pass time and rate, the total, the size of index.html per feature and the peak
memory. The issue's target: all latents of a 2048-latent SAE on the default model over 1M tokens
in at most 5 minutes on the 2-core CPU.

The side-by-side run against sae-dashboard 0.8.0 (its own venv: it pins transformer-lens 2.17,
transformers < 4.57 and numpy < 2) is not part of this script yet; see docs/dashboard.md.
"""

import argparse
import resource
import tempfile
import time
from pathlib import Path

import torch

from interp.dashboard import DashboardConfig, dashboard_run
from interp.viz.html import plotly_script


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sae", required=True)
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--features", default=None)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "dash"
        cfg = DashboardConfig(
            sae=args.sae,
            tokens=args.tokens,
            features=args.features,
            out=str(out),
            device=args.device,
        )
        start = time.perf_counter()
        result = dashboard_run(cfg)
        total = time.perf_counter() - start
        html = (out / "index.html").stat().st_size
    n = len(result.features)
    per_feature = (html - len(plotly_script())) / max(n, 1)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    s = result.summary
    print(f"device {args.device}, torch threads {torch.get_num_threads()}")
    print(
        "| tokens | features | pass (s) | pass tok/s | total (s) | KB per feature | peak RSS (MB) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|")
    print(
        f"| {s['n_tokens']:,} | {n:,} | {s['pass_seconds']:.1f} | {s['tokens_per_second']:,} "
        f"| {total:.1f} | {per_feature / 1024:.1f} | {peak:,.0f} |"
    )


if __name__ == "__main__":
    main()
