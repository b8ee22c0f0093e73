"""Which layer and pooling should the default model's monitor read? A probe per (layer, pool),
trained as `interp eval monitor train` trains it (training-split prompts, 3 templates kept out
of the fit for the threshold), measured on the held-out prompts (docs/evals.md).

    python experiments/evals/monitor_layers.py [--layers 2,4,8,12,14,15]
"""

import argparse

import torch

from interp.evals.monitor import default_training_set, evaluate_monitor, train_monitor
from interp.models import load_model


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--layers", default="2,4,8,12,14,15")
    args = parser.parse_args()
    torch.set_num_threads(1)
    model = load_model("default", device="cpu", dtype="float32")
    prompts, labels, calibration = default_training_set()
    print("layer pool  AUC harmful / jailbreak / prefixed benign   FPR at threshold")
    for layer in (int(x) for x in args.layers.split(",")):
        for pool in ("mean", "last"):
            hook = f"blocks.{layer}.hook_resid_post"
            result = train_monitor(
                model, prompts, labels, hook, pool, model_name="default", calibration=calibration
            )
            probe = [m for m in evaluate_monitor(model, result.monitor) if m.screen == "probe"]
            aucs = " / ".join(f"{m.auc:.3f}" for m in probe)
            print(f"{layer:5d} {pool:5s} {aucs:>40s}   {probe[0].fpr_at_threshold:.3f}")


if __name__ == "__main__":
    main()
