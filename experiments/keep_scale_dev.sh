#!/usr/bin/env bash
# Issue 14: does BatchNorm-consistent adaptation beat today's full stage? keep_scale (each adapted
# output channel of Theta' rescaled to its norm in Theta, so the frozen BatchNorm statistics still fit)
# with decoders whose output maps start at zero (delta_init="zero": the full stage starts exactly at
# the fc-only model) and a 100x larger mu0. Chosen on the development split, never on ss0's test
# classes: experiments/splits/ss0-dev.json (50 train classes, 25 held-out "val" classes inside ss0's
# train+val).
#   1. the shipped v3 fc-only recipe on the 50 dev train classes (runs/dev-v3-fconly);
#   2. from it, the v3 full stage shortened to 100 steps (as experiments/n3_runs.sh's gamma runs),
#      for each seed and candidate:  plain     (gamma 1, mu0 0.001, today's recipe)
#                                    keepzero  (keep_scale, delta_init zero, gamma 1, mu0 0.1)
#   3. each run's final step evaluated on the 25 held-out classes with the language control
#      (no checkpoint picked on those classes); the fc-only model too.
# Reports: experiments/results/keep_scale_dev/*.json. N3_SEEDS="0 1 2" (default) picks the seeds;
# two shares can run side by side (N3_THREADS=1; the second with N3_WAIT=1 waits for the fc-only
# model): each job is claimed by the first share to reach it (runs/NAME.claim; delete the claims
# of jobs that were cut short before running again).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
SPLIT=experiments/splits/ss0-dev.json
R=experiments/results/keep_scale_dev
mkdir -p "$R" runs
evd() { ev "$1" $SPLIT "$2" --part val; }

if [ "${N3_WAIT:-0}" = 1 ]; then
  while [ ! -d runs/dev-v3-fconly/final ]; do sleep 20; done
else
  tr runs/dev-v3-fconly --split $SPLIT --config checkpoints/recipe-fconly.json
fi
if claim dev-v3-fconly-eval; then evd runs/dev-v3-fconly/final "$R/fconly.json"; fi
for seed in ${N3_SEEDS:-0 1 2}; do
  for cand in plain keepzero; do
    name="dev-v3-full-$cand-s$seed"
    claim "$name" || continue
    model='{}'
    [ "$cand" = keepzero ] && model='{"keep_scale": true, "delta_init": "zero", "gamma": 1.0, "mu_init": 0.1}'
    recipe checkpoints/recipe-full.json "runs/$name.json" \
      "{\"train\": {\"max_steps\": 100, \"eval_every\": 50, \"checkpoint_every\": 50, \"seed\": $seed}, \"model\": $model}"
    tr "runs/$name" --split $SPLIT --config "runs/$name.json" --init-from runs/dev-v3-fconly/final
    evd "runs/$name/final" "$R/$cand-s$seed.json"
  done
done
