"""Speed of `interp dashboard`: the whole command (load, one pass, labels, writing) on an SAE,
alone or side by side with sae-dashboard 0.8.0.

    python experiments/bench/dashboard.py --sae /tmp/dash16/saes/blocks.12.hook_resid_post \
        --tokens 1000000
    python experiments/bench/dashboard.py --sae DIR --saedash --contexts 1024 [--features 0-255]

Alone, it prints the pass time and rate, the total, the size of index.html per feature and the
peak memory. The issue's target: all latents of a 2048-latent SAE on the default model over 1M
tokens in at most 5 minutes on the 2-core CPU.

With --saedash, one run times both tools on the same model (the SAE's, an HF folder such as the
embedded default model), the same SAE folder, the same tokens and the same features, each in a
fresh process, and prints the ratio:

- the tokens: the first --contexts contexts of interp's pass (the embedded corpus packed to 128
  tokens, BOS first), written to a .pt file that sae-dashboard reads; interp's pass over
  --contexts x 127 counted tokens makes exactly those contexts (it also runs its 32,768
  held-out tokens for the labels' scores, which sae-dashboard has no equivalent of);
- interp: `dashboard_run` (= `interp dashboard`) with the example settings aligned to
  sae-dashboard's defaults: top 20 examples, 10 quantile groups of 5, 5 tokens either side;
- sae-dashboard: `experiments/bench/saedash_runner.py`, run with the python of its own venv
  (~/.cache/interp/venv-saedash-0.8.0, or $INTERP_SAEDASH_VENV), which this script builds when
  it is missing:
  sae-dashboard pins transformer-lens 2.x, transformers < 4.57 and numpy < 2, so it cannot share
  interp's environment. The venv gets a CPU-only torch (this environment's version, '+cpu') and
  never a CUDA build.

Timed on each side: the process's wall time (imports included) and, inside it, load to written
output (model and SAE load, the pass(es), writing). Both sides report, per feature, the firings
and the max activation; the script prints how many agree, which shows the two saw the same
model, SAE and tokens. --profile adds a cProfile of sae-dashboard's side (its timing is then not
comparable; profile in a separate run).
"""

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

T_START = time.perf_counter()

import torch  # noqa: E402

from interp.dashboard import DashboardConfig, dashboard_run  # noqa: E402
from interp.viz.html import plotly_script  # noqa: E402

T_IMPORTS = time.perf_counter() - T_START

HERE = Path(__file__).resolve().parent
VENV = Path(
    os.environ.get("INTERP_SAEDASH_VENV", Path.home() / ".cache" / "interp" / "venv-saedash-0.8.0")
)
"""Outside the repository: tests/test_layout.py and ruff walk experiments/."""
RUNNER = HERE / "saedash_runner.py"
SAEDASH = "sae-dashboard==0.8.0"
CTX_LEN = 128


def ensure_venv(venv: Path) -> Path:
    """sae-dashboard's venv, built when missing; returns its python."""
    py = venv / "bin" / "python"
    if py.is_file() and _run_ok([str(py), "-c", "import sae_dashboard"]):
        return py
    print(f"building sae-dashboard's venv in {venv} (a few minutes) ...", flush=True)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
    pip = [str(py), "-m", "pip", "install", "-q"]
    base = torch.__version__.split("+")[0]
    cpu_torch = f"torch=={base}+cpu"
    # The '+cpu' local version exists only as PyTorch's CPU wheels (a local wheel folder, or
    # PyTorch's CPU index): pinning it means pip can never fall back to PyPI's CUDA build.
    if not _run_ok([*pip, cpu_torch]):
        subprocess.run(
            [*pip, cpu_torch, "--extra-index-url", "https://download.pytorch.org/whl/cpu"],
            check=True,
        )
    constraints = venv / "constraints.txt"
    # pyarrow >= 20 needs numpy 2, which sae-dashboard's transformer-lens 2.x excludes.
    constraints.write_text(f"{cpu_torch}\npyarrow<20\n")
    subprocess.run([*pip, SAEDASH, "-c", str(constraints)], check=True)
    # decode-clt (a dependency, for cross-layer transcoders) pulls PyPI's torchvision and
    # torchaudio, built for another torch: transformers then fails to import. Not used here.
    subprocess.run(
        [str(py), "-m", "pip", "uninstall", "-q", "-y", "torchvision", "torchaudio"], check=True
    )
    subprocess.run([str(py), "-c", "import sae_dashboard"], check=True)
    return py


def _run_ok(cmd: list[str]) -> bool:
    return subprocess.run(cmd, capture_output=True).returncode == 0


def aligned_config(sae: str, contexts: int, features: str | None, out: Path) -> DashboardConfig:
    """interp's options for the side-by-side run: sae-dashboard's example defaults."""
    return DashboardConfig(
        sae=sae,
        tokens=contexts * (CTX_LEN - 1),
        features=features,
        out=str(out),
        device="cpu",
        ctx_len=CTX_LEN,
        batch_size=64,
        top_k=20,
        quantiles=10,
        per_quantile=5,
        left=5,
        right=5,
    )


def write_inputs(cfg: DashboardConfig, contexts: int, tmp: Path) -> tuple[Path, Path, Path]:
    """(model folder, tokens.pt, features.json) for sae-dashboard: the contexts interp's pass
    starts with and the features it shows."""
    import itertools

    from interp.dashboard.config import parse_features
    from interp.dashboard.run import iter_dashboard_contexts, load_dashboard_sae
    from interp.models import load_model, local_model_dir

    sae, _ = load_dashboard_sae(cfg.sae)
    spec = getattr(sae.cfg, "model_name", None) or "default"
    model_dir = local_model_dir(spec)
    if model_dir is None:
        raise SystemExit(f"the SAE's model {spec!r} is not a local HF folder")
    model = load_model(spec, device="cpu")
    toks = torch.stack(list(itertools.islice(iter_dashboard_contexts(model, cfg), contexts)))
    assert toks.shape == (contexts, CTX_LEN), toks.shape
    feats = (
        parse_features(cfg.features, sae.cfg.d_sae) if cfg.features else list(range(sae.cfg.d_sae))
    )
    torch.save(toks, tmp / "tokens.pt")
    (tmp / "features.json").write_text(json.dumps(feats))
    return Path(model_dir), tmp / "tokens.pt", tmp / "features.json"


def ours_side(cfg_json: str, out_json: str) -> None:
    """interp's side, in its own process: dashboard_run, timed."""
    cfg = DashboardConfig.from_dict(json.loads(Path(cfg_json).read_text()))
    start = time.perf_counter()
    result = dashboard_run(cfg)
    total = time.perf_counter() - start
    out = Path(cfg.out)
    checks = {}
    for f in result.features:
        rec = json.loads((out / "features" / f"{f}.json").read_text())
        checks[str(f)] = {"fires": rec["fires"], "max": rec["max"]}
    html = (out / "index.html").stat().st_size
    Path(out_json).write_text(
        json.dumps(
            {
                "imports_s": round(T_IMPORTS, 2),
                "total_s": round(total, 2),
                "pass_s": result.summary["pass_seconds"],
                "n_tokens": result.summary["n_tokens"],
                "n_heldout_tokens": result.summary["n_heldout_tokens"],
                "features": len(result.features),
                "html_bytes": html,
                "out_bytes": sum(p.stat().st_size for p in out.rglob("*") if p.is_file()),
                "torch_threads": torch.get_num_threads(),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                "checks": checks,
            }
        )
    )


def timed(cmd: list[str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"failed: {' '.join(cmd[:3])} ... (exit {proc.returncode})")
    return wall


def compare_checks(ours: dict, theirs: dict) -> str:
    same_fires = sum(ours[f]["fires"] == theirs[f]["fires"] for f in ours)
    fired = [f for f in ours if ours[f]["fires"] > 0 and theirs[f]["fires"] > 0]
    rel = [abs(ours[f]["max"] - theirs[f]["max"]) / max(abs(theirs[f]["max"]), 1e-9) for f in fired]
    close = sum(r <= 0.01 for r in rel)
    return (
        f"firings equal for {same_fires}/{len(ours)} features; max activation within 1% for "
        f"{close}/{len(fired)} firing features (largest relative difference "
        f"{max(rel, default=0):.2g})"
    )


def side_by_side(args: argparse.Namespace) -> None:
    py = ensure_venv(Path(args.venv))
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        cfg = aligned_config(args.sae, args.contexts, args.features, tmp / "ours")
        model_dir, tokens, features = write_inputs(cfg, args.contexts, tmp)
        (tmp / "cfg.json").write_text(json.dumps(cfg.to_dict()))
        runner = [
            str(py), str(RUNNER), "--model", str(model_dir), "--sae", str(args.sae),
            "--tokens", str(tokens), "--features", str(features),
            "--out", str(tmp / "saedash.html"), "--json", str(tmp / "saedash.json"),
        ]  # fmt: skip
        if args.profile:
            runner += ["--profile", args.profile]
        ours_cmd = [
            sys.executable,
            __file__,
            "--ours-side",
            str(tmp / "cfg.json"),
            str(tmp / "ours.json"),
        ]
        env_load = os.getloadavg()
        print(f"load average at the start: {env_load[0]:.2f}, {env_load[1]:.2f}, {env_load[2]:.2f}")
        walls = {}
        walls["ours"] = timed(ours_cmd)
        ours = json.loads((tmp / "ours.json").read_text())
        walls["saedash"] = timed(runner)
        theirs = json.loads((tmp / "saedash.json").read_text())
        if args.ours_twice:
            import shutil

            shutil.rmtree(tmp / "ours")
            walls["ours2"] = timed(ours_cmd)
            ours2 = json.loads((tmp / "ours.json").read_text())
        end_load = os.getloadavg()

    print(
        f"\nmodel {model_dir}, SAE {args.sae}, hook {theirs['hook']}; {args.contexts} contexts x "
        f"{CTX_LEN} tokens; {ours['features']} features; torch threads "
        f"{ours['torch_threads']} / {theirs['torch_threads']}"
    )
    print(f"sae-dashboard side: {theirs['versions']}")
    print("\n| | interp | sae-dashboard 0.8.0 |\n|---|---:|---:|")
    rows = [
        ("process wall, imports included (s)", f"{walls['ours']:.1f}", f"{walls['saedash']:.1f}"),
        ("imports (s)", f"{ours['imports_s']:.1f}", f"{theirs['imports_s']:.1f}"),
        ("load to written output (s)", f"**{ours['total_s']:.1f}**", f"**{theirs['total_s']:.1f}**"),
        ("of which model + SAE load (s)", "(in total)", f"{theirs['load_s']:.1f}"),
        ("of which the pass(es) and statistics (s)", f"{ours['pass_s']:.1f} (pass)",
         f"{theirs['run_s']:.1f}"),
        ("of which writing (s)", "(in total)", f"{theirs['save_html_s']:.1f}"),
        ("tokens in the statistics", f"{ours['n_tokens']:,} (+{ours['n_heldout_tokens']:,} "
         "held out)", f"{theirs['contexts'] * theirs['ctx_len']:,}"),
        ("HTML (MB)", f"{ours['html_bytes'] / 1e6:.1f}", f"{theirs['html_bytes'] / 1e6:.1f}"),
        ("all output (MB)", f"{ours['out_bytes'] / 1e6:.1f}", f"{theirs['html_bytes'] / 1e6:.1f}"),
    ]  # fmt: skip
    for row in rows:
        print("| " + " | ".join(row) + " |")
    ratio = theirs["total_s"] / ours["total_s"]
    wall_ratio = walls["saedash"] / walls["ours"]
    print(f"\nratio (sae-dashboard / interp), load to written output: {ratio:.1f}x")
    print(f"ratio, whole processes (imports included): {wall_ratio:.1f}x")
    if args.ours_twice:
        print(
            f"interp again after sae-dashboard: {ours2['total_s']:.1f} s load to output "
            f"({walls['ours2']:.1f} s wall): ratio {theirs['total_s'] / ours2['total_s']:.1f}x"
        )
    print("same inputs:", compare_checks(ours["checks"], theirs["checks"]))
    print(f"load average at the end: {end_load[0]:.2f}, {end_load[1]:.2f}, {end_load[2]:.2f}")
    if args.profile:
        print(f"sae-dashboard profile: {args.profile}")


def alone(args: argparse.Namespace) -> None:
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


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--ours-side":
        ours_side(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sae", required=True)
    ap.add_argument("--tokens", type=int, default=1_000_000, help="alone: tokens of the pass")
    ap.add_argument("--features", default=None, help="e.g. 0-255; default: all")
    ap.add_argument("--device", default="cpu", help="alone: the device")
    ap.add_argument("--saedash", action="store_true", help="side by side with sae-dashboard")
    ap.add_argument("--contexts", type=int, default=1024, help="--saedash: contexts of 128")
    ap.add_argument("--venv", default=str(VENV), help="--saedash: sae-dashboard's venv")
    ap.add_argument("--ours-twice", action="store_true", help="--saedash: interp again after")
    ap.add_argument("--profile", default=None, help="--saedash: cProfile sae-dashboard to FILE")
    args = ap.parse_args()
    if args.saedash:
        side_by_side(args)
    else:
        alone(args)


if __name__ == "__main__":
    main()
