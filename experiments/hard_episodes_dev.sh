#!/usr/bin/env bash
# Issue 14: do episodes that need task-specific features make the full stage's ΔΘ carry language?
# Today's full stage trains on episodes of K = 25 random train classes, where one set-level ΔΘ has
# to serve 25 unrelated birds at once. Here the episodes are made of neighbours (an anchor class
# and its K-1 nearest train classes in the text encoder's sentence embedding, as evaluate's hard5
# tasks are built) and/or K varies, so a network written for the set can pay off.
# Chosen on the development split, never on ss0's test classes: experiments/splits/ss0-dev.json
# (50 train classes, 25 held-out "val" classes inside ss0's train+val), from the fc-only model
# experiments/keep_scale_dev.sh trained (runs/dev-v3-fconly), 100-step full stages as there:
#   plain   today's full stage (keep_scale_dev.sh's runs, evaluated here with hard5 too)
#   mixed   half the episodes neighbours, K uniform in 2..25 (train: neighbour_episodes 0.5, k_min 2)
#   near5   every episode an anchor and its 4 nearest classes (neighbour_episodes 1, k 5)
# Each run's final step is evaluated on the 25 held-out classes with the paper protocol and with
# hard5, both with the language control; the fc-only model too.
# Reports: experiments/results/hard_episodes_dev/*.json (the paper-protocol reports of fc-only and
# plain are keep_scale_dev's). N3_SEEDS="0 1 2" (default), N3_CANDS="mixed near5" (default);
# two shares can run side by side (N3_THREADS=1): each job is claimed by the first share to reach
# it (runs/NAME.claim; delete the claims of jobs that were cut short before running again).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
SPLIT=experiments/splits/ss0-dev.json
R=experiments/results/hard_episodes_dev
K=experiments/results/keep_scale_dev
mkdir -p "$R" runs
evd() { ev "$1" $SPLIT "$2" --part val "${@:3}"; }
[ -d runs/dev-v3-fconly/final ] || { echo "run experiments/keep_scale_dev.sh first (runs/dev-v3-fconly)"; exit 1; }

if claim hard5-dev-v3-fconly; then evd runs/dev-v3-fconly/final "$R/fconly-hard5.json" --protocol hard5; fi
for seed in ${N3_SEEDS:-0 1 2}; do
  [ -d "runs/dev-v3-full-plain-s$seed/final" ] || continue
  if claim "hard5-dev-v3-full-plain-s$seed"; then
    evd "runs/dev-v3-full-plain-s$seed/final" "$R/plain-s$seed-hard5.json" --protocol hard5
  fi
done
for seed in ${N3_SEEDS:-0 1 2}; do
  for cand in ${N3_CANDS:-mixed near5}; do
    name="dev-v3-full-$cand-s$seed"
    claim "$name" || continue
    case $cand in
      mixed) episodes='"neighbour_episodes": 0.5, "k_min": 2' ;;
      near5) episodes='"neighbour_episodes": 1.0, "k": 5' ;;
      *) echo "unknown candidate '$cand'" >&2; exit 2 ;;
    esac
    recipe checkpoints/recipe-full.json "runs/$name.json" \
      "{\"train\": {\"max_steps\": 100, \"eval_every\": 100, \"checkpoint_every\": 50, \"seed\": $seed, $episodes}}"
    tr "runs/$name" --split $SPLIT --config "runs/$name.json" --init-from runs/dev-v3-fconly/final
    evd "runs/$name/final" "$R/$cand-s$seed.json"
    evd "runs/$name/final" "$R/$cand-s$seed-hard5.json" --protocol hard5
  done
done
