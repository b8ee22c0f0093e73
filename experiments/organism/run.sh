#!/usr/bin/env bash
# Reproduce the shipped default model: two seeded stages, then ship as fp16.
#   bash experiments/organism/run.sh
# Stage 1 learns the corpus families; stage 2 continues from its step-1250 checkpoint with half
# of every batch made of random-token repeats, which is what made induction heads form here.
set -euo pipefail
cd "$(dirname "$0")/../.."
python experiments/organism/train.py --out experiments/organism/out_stage1 --steps 2500 \
  --stop-after 1251 --save-every 0
python experiments/organism/train.py --init-from experiments/organism/out_stage1/model \
  --out experiments/organism/out_stage2 --repeat-frac 0.5 --lr 1e-3 --warmup 50 --steps 1500 \
  --seed 1 --threads 1
python experiments/organism/ship.py experiments/organism/out_stage2/model
python -m interp organism eval --json experiments/organism/out_stage2/behaviours.json
