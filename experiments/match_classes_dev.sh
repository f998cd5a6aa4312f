#!/usr/bin/env bash
# Issue 14: would more training classes make the sentence match better on new classes? Each match
# fits its training classes almost perfectly (its loss reaches the label-smoothing floor by step
# ~1,000 of 1,500), so the number of classes it learns its sentence → region maps from may limit
# it. On the development split (experiments/splits/ss0-dev.json; ss0's test classes are never
# read), the shipped arrangement (the mean of three matches, seeds 0-2, κ = 1) trained on fewer of
# the 50 dev train classes:
#   25 classes: experiments/splits/ss0-dev-A.json (the first 25)
#   40 classes: experiments/splits/ss0-dev-40.json (random.Random(40).sample of the 50)
# against the existing 50-class matches (runs/dev-match-s{0,1,2}, experiments/sentence_match_dev.sh).
# Each mean of three joins each of the three dev full models (runs/dev-v3-full-plain-s{0,1,2})
# through experiments/match_ensemble.py, as the 50-class mean did, and is scored on the 25
# held-out classes with the language control from the 50 dev train classes.
# Reports: experiments/results/match_classes_dev/*.json. Two shares can run side by side
# (N3_THREADS=1 each), each job claimed by the first share to reach it (runs/NAME.claim).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
R=experiments/results/match_classes_dev
mkdir -p "$R" runs
split_of() { [ "$1" = 25 ] && echo experiments/splits/ss0-dev-A.json || echo "experiments/splits/ss0-dev-$1.json"; }
for n in ${N3_CLASSES:-40 25}; do
  for seed in 0 1 2; do
    if claim "dev$n-match-s$seed"; then
      tm "runs/dev$n-match-s$seed" --checkpoint "runs/dev-v3-full-plain-s$seed/final" --split "$(split_of "$n")" \
        --seed "$seed" --members 1
    fi
  done
done
for n in ${N3_CLASSES:-40 25}; do
  for s in 0 1 2; do
    out="$R/dev$n-full-s$s-mean3-k1.json"
    if claim "dev$n-full-s$s-eval"; then
      for m in 0 1 2; do while [ ! -f "runs/dev$n-match-s$m/checkpoint.json" ]; do sleep 20; done; done
      [ -f "$out" ] || $PY experiments/match_ensemble.py --checkpoint "runs/dev-match-s$s" \
        --members "runs/dev$n-match-s0" "runs/dev$n-match-s1" "runs/dev$n-match-s2" --threads "${N3_THREADS:-1}" -- \
        --split experiments/splits/ss0-dev.json --part val --kappa 1 --no-progress --out "$out"
    fi
  done
done
