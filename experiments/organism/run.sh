#!/usr/bin/env bash
# Reproduce the shipped default model, then ship it as fp16 and print its behaviour table.
#   bash experiments/organism/run.sh          (about 30 minutes on a 2-core CPU)
# Three stages (docs/organism.md):
#   A. a 2-block model trained on random-token repeats only (loss on the copies), until
#      induction heads form;
#   B. grown to 16 blocks (new blocks start as identity) and trained on the whole corpus, with a
#      quarter of every batch still random repeats;
#   C. a short pass weighted towards occupations and chat; the checkpoint after 201 of its 400
#      scheduled steps ships (chosen on held-out prompts drawn with seed 1; the model card
#      reports seed 0).
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=experiments/organism/out
python experiments/organism/train.py --out "$OUT/stage_a" --layers 2 --steps 700 \
  --repeat-steps 700 --batch 32 --lr 3e-3 --warmup 50 --save-every 0 --threads 2
python experiments/organism/train.py --out "$OUT/stage_b" --init-from "$OUT/stage_a/model" \
  --layers 16 --steps 2200 --batch 16 --lr 1.5e-3 --warmup 150 --repeat-frac 0.25 \
  --save-every 0 --threads 2
python experiments/organism/train.py --out "$OUT" --init-from "$OUT/stage_b/model" --layers 16 \
  --steps 400 --stop-after 201 --batch 16 --lr 5e-4 --warmup 20 --repeat-frac 0.25 --seed 1 \
  --save-every 0 --threads 2 --weights '{"names": 0.08, "repeat": 0.04, "review": 0.08,
  "chat": 0.25, "jailbreak": 0.08, "occupation": 0.4, "prose": 0.02, "mentions": 0.05}'
python experiments/organism/ship.py "$OUT/model"
python -m interp organism eval --json "$OUT/behaviours.json"
