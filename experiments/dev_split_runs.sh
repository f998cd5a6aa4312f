#!/usr/bin/env bash
# Recipe choices for the shipped models (v2, then v3), made without ss0's test classes: fc-only runs on a
# development split inside ss0's 65 train + 10 val classes (experiments/splits/ss0-dev.json:
# 50 train classes, 25 held-out "val" classes), so a choice is judged on 25 unseen classes
# instead of ss0's 10 val classes. Each run logs val per-class top-1 every 100 steps;
# experiments/results/dev_split.json collects the curves. Finished runs are skipped.
#   label:       mean_skip="label" (the sentence-embedding MLP feeds the label embedding)
#   classifier:  mean_skip="classifier" (it adds to the classifier row; the shipped recipe)
#   classifier+extra: the same, with the other description sets as extra training variants
#   v3 choices (all with the other three description sets as training variants):
#   classifier-sets:  no sentence-dropped copies, the main description read with probability 0.5
#   sets-drop:        8 sentence-dropped copies too, main description with probability 0.5 (v3)
#   sets-drop-p30:    the same with probability 0.3;  sets-drop-uniform16: 16 copies, uniform pick
#   sets-slow:        as classifier-sets with lr_label 1e-4, lr_adapt 3e-4
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
SPLIT=experiments/splits/ss0-dev.json
mkdir -p runs
run() {
  local name=$1 cfg=$2
  [ -d "runs/dev-$name/final" ] && return 0
  recipe checkpoints/recipe-fconly-v2.json "runs/dev-$name.json" "$cfg"
  tr "runs/dev-$name" --split $SPLIT --config "runs/dev-$name.json"
}
run label '{"model": {"mean_skip": "label"}}'
run classifier '{}'
run classifier-extra '{"train": {"extra_descriptions": ["wikipedia_lead", "gpt4_part_descriptors", "gpt3_descriptors"]}}'
SETS='"extra_descriptions": ["wikipedia_lead", "gpt4_part_descriptors", "gpt3_descriptors"]'
run classifier-sets "{\"train\": {\"text_variants\": 1, \"main_text_prob\": 0.5, $SETS}}"
run sets-drop "{\"train\": {\"text_variants\": 8, \"main_text_prob\": 0.5, $SETS}}"
run sets-drop-p30 "{\"train\": {\"text_variants\": 8, \"main_text_prob\": 0.3, $SETS}}"
run sets-drop-uniform16 "{\"train\": {\"text_variants\": 16, $SETS}}"
run sets-slow "{\"train\": {\"text_variants\": 1, \"main_text_prob\": 0.5, \"lr_label\": 1e-4, \"lr_adapt\": 3e-4, $SETS}}"
$PY - <<'PY'
import json
from pathlib import Path
out = {"split": "experiments/splits/ss0-dev.json (50 train / 25 held-out classes of ss0 train+val)",
       "metric": "per-class top-1 on the 25 held-out classes, one 25-way classifier", "runs": {}}
for name in ("label", "classifier", "classifier-extra", "classifier-sets", "sets-drop", "sets-drop-p30",
             "sets-drop-uniform16", "sets-slow"):
    log = Path(f"runs/dev-{name}/log.jsonl")
    if log.exists():
        curve = [json.loads(l) for l in log.read_text().splitlines()]
        out["runs"][name] = {"curve": [[r["step"], r["val_top1"]] for r in curve],
                             "final": curve[-1]["val_top1"], "mean_last_3": sum(r["val_top1"] for r in curve[-3:]) / 3}
Path("experiments/results/dev_split.json").write_text(json.dumps(out, indent=1))
print(json.dumps({k: round(v["mean_last_3"], 3) for k, v in out["runs"].items()}))
PY
