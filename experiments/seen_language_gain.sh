#!/usr/bin/env bash
# Issue 14 diagnostic: is ΔΘ's missing language a failure to generalise to new classes, or does
# the full stage not write the words into ΔΘ even for the classes it trained on? The dev-split
# models of experiments/keep_scale_dev.sh and experiments/hard_episodes_dev.sh evaluated, with the
# language control, on 25 of their own 50 train classes (training photos; experiments/splits/
# ss0-dev-seen.json), ΔΘ swapped for one written from the other 25 train classes' descriptions.
# Reports: experiments/results/seen_language_gain/*.json. N3_RUNS picks the runs (default below).
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
R=experiments/results/seen_language_gain
mkdir -p "$R"
for name in ${N3_RUNS:-dev-v3-fconly dev-v3-full-plain-s0 dev-v3-full-near5-s0}; do
  ev "runs/$name/final" experiments/splits/ss0-dev-seen.json "$R/$name.json" --part val
done
