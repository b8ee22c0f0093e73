#!/usr/bin/env bash
# Reproduce the shipped default model, then ship it as fp16 and print its behaviour table.
#   bash experiments/organism/run.sh
# The shipped weights are the state after 1,251 steps of a 2,500-step cosine schedule: that
# run's later checkpoints were not better, and it was stopped there (see docs/organism.md).
set -euo pipefail
cd "$(dirname "$0")/../.."
python experiments/organism/train.py --out experiments/organism/out --steps 2500 \
  --stop-after 1251 --save-every 0 --threads 2
python experiments/organism/ship.py experiments/organism/out/model
python -m interp organism eval --json experiments/organism/out/behaviours.json
