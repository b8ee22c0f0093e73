"""Copy a trained organism into the package as fp16 safetensors: interp/organism/weights/.

python experiments/organism/ship.py experiments/organism/out/model
"""

import argparse
import shutil
import tempfile
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from interp.organism import WEIGHTS_DIR


def ship(src: Path, dst: Path = WEIGHTS_DIR) -> int:
    """Write `src` as fp16 into `dst` atomically; returns the weights file size in bytes."""
    model = AutoModelForCausalLM.from_pretrained(src, dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(src)
    tmp = Path(tempfile.mkdtemp(dir=dst.parent, prefix=".weights-"))
    model.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    (tmp / "generation_config.json").unlink(missing_ok=True)
    if dst.exists():
        shutil.rmtree(dst)
    tmp.chmod(0o755)  # mkdtemp makes it private; the package folder must be readable
    for f in tmp.iterdir():
        f.chmod(0o644)
    tmp.rename(dst)
    return (dst / "model.safetensors").stat().st_size


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("src", type=Path)
    size = ship(p.parse_args().src)
    print(f"shipped {WEIGHTS_DIR} ({size / 1e6:.2f} MB)")
