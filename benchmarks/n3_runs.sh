#!/usr/bin/env bash
# N3 training runs behind docs/RESULTS.md (the shipped ss0 models and the ps runs of
# benchmarks/ps_runs.sh are reused, not retrained):
#   1. ss1 and ss2 with the shipped two-stage recipe, the full stage shortened to 300 steps;
#   2. the gamma / mu0 ablation on ss0: the full stage (100 steps) from the shipped fc-only run,
#      for the paper's six (gamma, mu0) settings.
# Every run picks its checkpoint on val; each is then evaluated once on its split's test classes.
# Re-running skips finished runs (runs/NAME/final) and finished evaluations. N3_THREADS=1 leaves
# a core to another job.
set -euo pipefail
cd "$(dirname "$0")/.."
source benchmarks/_runs.sh
R=benchmarks/results/n3
mkdir -p "$R" runs
for s in ss1 ss2; do
  tr runs/$s-fconly --split $s --config checkpoints/recipe-fconly-v1.json
  ev runs/$s-fconly/best $s "$R/$s-fconly.json"
  tr runs/$s-full --split $s --config checkpoints/recipe-full-v1.json --init-from runs/$s-fconly/best --max-steps 300
  ev runs/$s-full/best $s "$R/$s-full.json"
done
for gm in "0.999 0.001" "0.99 0.01" "0.9 0.1" "0.5 0.5" "0.1 0.9" "0.01 0.99"; do
  set -- $gm
  name="ss0-gamma$1-mu$2"
  cfg=runs/$name.json
  $PY - "$1" "$2" "$cfg" <<'PY'
import json, sys
r = json.load(open("checkpoints/recipe-full-v1.json"))
r["model"].update(gamma=float(sys.argv[1]), mu_init=float(sys.argv[2]))
r["train"].update(max_steps=100, eval_every=50, checkpoint_every=50)
json.dump(r, open(sys.argv[3], "w"))
PY
  tr runs/$name --split ss0 --config "$cfg" --init-from runs/ss0-fconly/best
  ev runs/$name/best ss0 "$R/$name.json"
done
