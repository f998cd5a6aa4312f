#!/usr/bin/env bash
# Issue 14: the sentence match (n3core/sentence_match.py) built into N3, and its weight κ chosen on
# the development split (experiments/splits/ss0-dev.json: 50 train classes, 25 held-out "val"
# classes inside ss0's train+val), never on test classes. The proxy (late_conditioning.py) chose
# κ = 0.5 over fc-only probe rows; here the match joins the real dev full models
# (runs/dev-v3-full-plain-s{0,1,2}, today's full recipe, from keep_scale_dev.sh), one match per
# seed, trained on the 50 dev train classes, scored on the 25 val classes at κ = 0.25, 0.5, 1
# (paper protocol, language control; more with N3_KAPPAS="2"), then hard5 at the chosen κ
# (N3_HARD_KAPPA, default 1).
# Reports: experiments/results/sentence_match_dev/*.json. Two shares can run side by side
# (N3_THREADS=1), each job claimed by the first share to reach it (runs/NAME.claim).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
SPLIT=experiments/splits/ss0-dev.json
R=experiments/results/sentence_match_dev
HARD_KAPPA=${N3_HARD_KAPPA:-1}
mkdir -p "$R" runs
evd() { ev "$1" $SPLIT "$2" --part val "${@:3}"; }
for seed in ${N3_SEEDS:-0 1 2}; do
  [ -d "runs/dev-v3-full-plain-s$seed/final" ] || { echo "run experiments/keep_scale_dev.sh first"; exit 1; }
  if claim "dev-match-s$seed"; then
    tm "runs/dev-match-s$seed" --checkpoint "runs/dev-v3-full-plain-s$seed/final" --split $SPLIT --seed "$seed" --members 1
  fi
done
for seed in ${N3_SEEDS:-0 1 2}; do
  for kappa in ${N3_KAPPAS:-0.5 0.25 1}; do
    if claim "dev-match-s$seed-k$kappa"; then
      while [ ! -f "runs/dev-match-s$seed/checkpoint.json" ]; do sleep 20; done
      evd "runs/dev-match-s$seed" "$R/match-s$seed-k$kappa.json" --kappa "$kappa"
    fi
  done
done
for seed in ${N3_SEEDS:-0 1 2}; do
  if claim "dev-match-s$seed-k$HARD_KAPPA-hard5"; then
    evd "runs/dev-match-s$seed" "$R/match-s$seed-k$HARD_KAPPA-hard5.json" --kappa "$HARD_KAPPA" --protocol hard5
  fi
done
