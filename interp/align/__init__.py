"""Alignment driven by steering vectors: weight edits (bake a vector into a bias, orthogonalise
a direction out of the weights), DPO, BiPO and a probe reward model.

Names load on first use (`interp.lazy`), so `--help` imports no torch.
"""

from interp.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    # weight edits and the aligned-model folder (interp/align/edits.py, folder.py, report.py)
    "bake": "interp.align.edits:bake",
    "orthogonalize": "interp.align.edits:orthogonalize",
    "AlignError": "interp.align.errors:AlignError",
    "write_aligned": "interp.align.folder:write_aligned",
    "check_out": "interp.align.folder:check_out",
    "AlignReport": "interp.align.report:AlignReport",
    "changed_parameters": "interp.align.edits:changed_parameters",
    # preference training (interp/align/pairs.py, dpo.py, bipo.py, reward.py)
    "PreferencePairs": "interp.align.pairs:PreferencePairs",
    "preference_pairs": "interp.align.pairs:preference_pairs",
    "prompt_set": "interp.align.pairs:prompt_set",
    "DPOSettings": "interp.align.train_config:DPOSettings",
    "BiPOSettings": "interp.align.train_config:BiPOSettings",
    "dpo_loss": "interp.align.dpo:dpo_loss",
    "train_dpo": "interp.align.dpo:train_dpo",
    "train_bipo": "interp.align.bipo:train_bipo",
    "RewardProbe": "interp.align.reward:RewardProbe",
    "train_reward_probe": "interp.align.reward:train_reward_probe",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
