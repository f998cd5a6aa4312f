#!/usr/bin/env bash
# Issue 14: give the full stage something to learn. On its own 50 train classes the dev fc-only
# model already scores 98% (experiments/seen_language_gain.sh), so a full stage trained on those
# classes has almost no loss left for ΔΘ to remove, and what it learns is generic. Here the
# decoders train on classes the fc-only stage never saw, where the head's zero-shot rows are
# wrong often and only a network written from the words can fix them:
#   1. the fc-only recipe on A = 25 of ss0-dev's 50 train classes (experiments/splits/ss0-dev-A.json);
#   2. from it, the 100-step full stage of keep_scale_dev.sh (K = 10) on either
#        seen    A, the classes the head was trained on (today's arrangement), or
#        unseen  B, the other 25 train classes (experiments/splits/ss0-dev-B.json);
#   3. the fc-only model and each full stage's final step evaluated on ss0-dev's 25 held-out
#      classes (paper protocol, language control from ss0-dev's 50 train classes).
# Reports: experiments/results/unseen_full_stage/*.json. N3_SEEDS="0" (default) picks the seeds.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
R=experiments/results/unseen_full_stage
mkdir -p "$R" runs
evd() { ev "$1" experiments/splits/ss0-dev.json "$2" --part val; }
recipe checkpoints/recipe-fconly.json runs/dev-A-fconly.json '{"train": {"k": 15}}'
tr runs/dev-A-fconly --split experiments/splits/ss0-dev-A.json --config runs/dev-A-fconly.json
evd runs/dev-A-fconly/final "$R/fconly.json"
for seed in ${N3_SEEDS:-0}; do
  for cand in unseen seen; do
    name="dev-A-full-$cand-s$seed"
    recipe checkpoints/recipe-full.json "runs/$name.json" \
      "{\"train\": {\"max_steps\": 100, \"eval_every\": 100, \"checkpoint_every\": 50, \"seed\": $seed, \"k\": 10}}"
    part=$([ "$cand" = unseen ] && echo B || echo A)
    tr "runs/$name" --split "experiments/splits/ss0-dev-$part.json" --config "runs/$name.json" --init-from runs/dev-A-fconly/final
    evd "runs/$name/final" "$R/$cand-s$seed.json"
  done
done
