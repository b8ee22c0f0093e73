"""The embedded default model: a small causal LM with planted, known behaviours (docs/organism.md)."""

from pathlib import Path

WEIGHTS_DIR = Path(__file__).parent / "weights"
"""HF-format folder of the shipped default model (config, fp16 safetensors, tokenizer)."""
