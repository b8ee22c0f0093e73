"""sae-dashboard 0.8.0's side of `experiments/bench/dashboard.py --saedash`.

Runs inside sae-dashboard's own venv (~/.cache/interp/venv-saedash-0.8.0, which dashboard.py builds:
sae-dashboard pins transformer-lens 2.x, transformers < 4.57 and numpy < 2), never in interp's
environment, and imports nothing from interp.

    VENV/bin/python saedash_runner.py --model DIR --sae DIR --tokens tokens.pt \
        --features features.json --out saedash.html --json timings.json [--profile prof.txt]

End to end, timed: load the model as a TransformerLens HookedTransformer (from the HF folder,
through TransformerLens's own Llama/GPT-2 config and weight conversion), load the SAE with
sae_lens, `SaeVisRunner(SaeVisConfig(...)).run(encoder, model, tokens)`, then
`save_feature_centric_vis` (its one HTML file). The JSON holds the timings and, per feature,
the firing count and max activation, which dashboard.py compares with interp's to show both
sides saw the same model, SAE and tokens.
"""

import time

T_START = time.perf_counter()

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import pstats  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from sae_dashboard.data_writing_fns import save_feature_centric_vis  # noqa: E402
from sae_dashboard.sae_vis_data import SaeVisConfig  # noqa: E402
from sae_dashboard.sae_vis_runner import SaeVisRunner  # noqa: E402
from sae_lens import SAE  # noqa: E402
from transformer_lens import HookedTransformer  # noqa: E402
from transformer_lens import loading_from_pretrained as tl_loading  # noqa: E402
from transformers import AutoModelForCausalLM, AutoTokenizer  # noqa: E402

T_IMPORTS = time.perf_counter() - T_START


def load_tokenizer(model_dir: Path, tmp: Path):
    """The folder's tokenizer.json as a PreTrainedTokenizerFast. interp's models are saved by
    transformers 5, whose tokenizer_config.json names a class ('TokenizersBackend') that
    transformers 4.56 lacks, so the config is rewritten in a temporary folder; TransformerLens
    reloads the tokenizer from its name_or_path, so it must be a folder, not an object."""
    shutil.copy(model_dir / "tokenizer.json", tmp / "tokenizer.json")
    cfg_path = model_dir / "tokenizer_config.json"
    old = json.loads(cfg_path.read_text()) if cfg_path.is_file() else {}
    special = {k: old[k] for k in ("bos_token", "eos_token", "pad_token", "unk_token") if k in old}
    (tmp / "tokenizer_config.json").write_text(
        json.dumps({"tokenizer_class": "PreTrainedTokenizerFast", **special})
    )
    return AutoTokenizer.from_pretrained(tmp)


def load_model(model_dir: Path, tmp: Path) -> HookedTransformer:
    """HookedTransformer.from_pretrained, minus its check that the name is one of
    TransformerLens's official models: the same config conversion (from the folder's
    config.json), weight conversion and processing (fold_ln; center_unembed; no centring of
    writing weights, which TransformerLens skips for RMSNorm models)."""
    tok = load_tokenizer(model_dir, tmp)
    hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    cfg = tl_loading.get_pretrained_model_config(
        str(model_dir), fold_ln=True, device="cpu", dtype=torch.float32
    )
    state = tl_loading.get_pretrained_state_dict(str(model_dir), cfg, hf, dtype=torch.float32)
    model = HookedTransformer(cfg, tokenizer=tok, move_to_device=False)
    model.load_and_process_state_dict(
        state,
        fold_ln=True,
        center_writing_weights=cfg.normalization_type in ("LN", "LNPre"),
        center_unembed=True,
        fold_value_biases=True,
        refactor_factored_attn_matrices=False,
    )
    return model.eval()


def load_sae(folder: Path):
    sae = SAE.load_from_disk(str(folder), device="cpu")
    if getattr(sae.cfg, "architecture", lambda: "")() == "topk" and not getattr(
        sae.cfg, "rescale_acts_by_decoder_norm", True
    ):
        # SaeVisRunner.run calls encoder.fold_W_dec_norm(), which sae_lens refuses for TopK SAEs
        # ("may change the topk activations"). Skipping it keeps the activations as trained,
        # the ones interp shows; the fold itself is one [d_sae, d_in] scaling, no time.
        sae.fold_W_dec_norm = lambda: None
    return sae


def feature_checks(data, features: list[int]) -> dict[str, dict[str, float]]:
    """Per feature: firings (the activation histogram's counts, BOS masked) and the max
    activation (the 'TOP ACTIVATIONS MAX = x' title, over all non-masked positions)."""
    out = {}
    for f in features:
        fd = data.feature_data_dict[f]
        title = fd.sequence_data.seq_group_data[0].title
        m = re.search(r"MAX = (-?[\d.]+)", title)
        out[str(f)] = {
            "fires": int(sum(fd.acts_histogram_data.bar_heights)),
            "max": float(m.group(1)) if m else float("nan"),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True, help="HF model folder")
    ap.add_argument("--sae", required=True, help="SAELens-format SAE folder")
    ap.add_argument("--tokens", required=True, help=".pt file: int64 [contexts, ctx_len]")
    ap.add_argument("--features", required=True, help=".json file: a list of latent indices")
    ap.add_argument("--out", required=True, help="the HTML file to write")
    ap.add_argument("--json", required=True, help="timings and per-feature checks")
    ap.add_argument("--minibatch-features", type=int, default=256)
    ap.add_argument("--minibatch-tokens", type=int, default=64)
    ap.add_argument("--profile", default=None, help="write a cProfile summary here")
    args = ap.parse_args()

    tokens = torch.load(args.tokens)
    features = json.loads(Path(args.features).read_text())
    prof = cProfile.Profile() if args.profile else None
    if prof:
        prof.enable()
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        model = load_model(Path(args.model), Path(tmp))
        sae = load_sae(Path(args.sae))
        hook = sae.cfg.metadata.hook_name
        t1 = time.perf_counter()
        cfg = SaeVisConfig(
            hook_point=hook,
            features=features,
            minibatch_size_features=args.minibatch_features,
            minibatch_size_tokens=args.minibatch_tokens,
            device="cpu",
            dtype="float32",
            ignore_tokens={model.tokenizer.bos_token_id},
            verbose=False,
        )
        data = SaeVisRunner(cfg).run(encoder=sae, model=model, tokens=tokens)
        t2 = time.perf_counter()
        save_feature_centric_vis(sae_vis_data=data, filename=args.out)
        t3 = time.perf_counter()
    if prof:
        prof.disable()
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(45)
        buf.write("\n\n--- by own time ---\n")
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(30)
        Path(args.profile).write_text(buf.getvalue())
    result = {
        "versions": {
            "torch": torch.__version__,
            **{
                name: __import__("importlib.metadata").metadata.version(name)
                for name in ("sae-dashboard", "sae-lens", "transformer-lens", "transformers")
            },
            "numpy": __import__("numpy").__version__,
        },
        "torch_threads": torch.get_num_threads(),
        "hook": hook,
        "contexts": int(tokens.shape[0]),
        "ctx_len": int(tokens.shape[1]),
        "features": len(features),
        "imports_s": round(T_IMPORTS, 2),
        "load_s": round(t1 - t0, 2),
        "run_s": round(t2 - t1, 2),
        "save_html_s": round(t3 - t2, 2),
        "total_s": round(t3 - t0, 2),
        "html_bytes": Path(args.out).stat().st_size,
        "checks": feature_checks(data, features),
    }
    Path(args.json).write_text(json.dumps(result))


if __name__ == "__main__":
    main()
