#!/usr/bin/env bash
# The ps-split numbers of the model card: (1) the shipped ss0 models on ps test (17 of its 25
# classes are ss0 train classes: seen-class numbers), (2) the same recipe trained on ps's own
# train classes (the earlier full recipe, recipe-full-v0.json, shortened to 600 steps),
# evaluated zero-shot on ps test.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
R=benchmarks/results
$PY -m n3core evaluate --checkpoint checkpoints/n3-effl0-minilm-ss0 --split ps --out $R/ss0-full-on-ps-test.json --no-progress
$PY -m n3core evaluate --checkpoint checkpoints/n3-effl0-minilm-ss0-fconly --split ps --out $R/ss0-fconly-on-ps-test.json --no-progress
$PY -m n3core train --split ps --out runs/ps-fconly --config checkpoints/recipe-fconly.json --no-progress
$PY -m n3core train --split ps --out runs/ps-full --config checkpoints/recipe-full-v0.json --init-from runs/ps-fconly/best --max-steps 600 --no-progress
$PY -m n3core evaluate --checkpoint runs/ps-fconly/best --split ps --out $R/ps-fconly-on-ps-test.json --no-progress
$PY -m n3core evaluate --checkpoint runs/ps-full/best --split ps --out $R/ps-full-on-ps-test.json --no-progress
