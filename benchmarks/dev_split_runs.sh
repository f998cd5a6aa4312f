#!/usr/bin/env bash
# Recipe choices for the v2 shipped models, made without ss0's test classes: fc-only runs on a
# development split inside ss0's 65 train + 10 val classes (benchmarks/splits/ss0-dev.json:
# 50 train classes, 25 held-out "val" classes), so a choice is judged on 25 unseen classes
# instead of ss0's 10 val classes. Each run logs val per-class top-1 every 100 steps;
# benchmarks/results/dev_split.json collects the curves. Finished runs are skipped.
#   label:       mean_skip="label" (the sentence-embedding MLP feeds the label embedding)
#   classifier:  mean_skip="classifier" (it adds to the classifier row; the shipped recipe)
#   classifier+extra: the same, with the other description sets as extra training variants
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
SPLIT=benchmarks/splits/ss0-dev.json
mkdir -p runs
run() {
  local name=$1 cfg=$2
  [ -d "runs/dev-$name/final" ] && return 0
  $PY - "$cfg" "runs/dev-$name.json" <<'PY'
import json, sys
r = json.load(open("checkpoints/recipe-fconly.json"))
r["model"].update(json.loads(sys.argv[1]).get("model", {}))
r["train"].update(json.loads(sys.argv[1]).get("train", {}))
json.dump(r, open(sys.argv[2], "w"))
PY
  $PY -m n3core train --split $SPLIT --out "runs/dev-$name" --config "runs/dev-$name.json" --no-progress \
      --threads "${N3_THREADS:-0}" $( [ -d "runs/dev-$name" ] && echo --resume )
}
run label '{"model": {"mean_skip": "label"}}'
run classifier '{}'
run classifier-extra '{"train": {"extra_descriptions": ["wikipedia_lead", "gpt4_part_descriptors", "gpt3_descriptors"]}}'
$PY - <<'PY'
import json
from pathlib import Path
out = {"split": "benchmarks/splits/ss0-dev.json (50 train / 25 held-out classes of ss0 train+val)",
       "metric": "per-class top-1 on the 25 held-out classes, one 25-way classifier", "runs": {}}
for name in ("label", "classifier", "classifier-extra"):
    log = Path(f"runs/dev-{name}/log.jsonl")
    if log.exists():
        curve = [json.loads(l) for l in log.read_text().splitlines()]
        out["runs"][name] = {"curve": [[r["step"], r["val_top1"]] for r in curve],
                             "final": curve[-1]["val_top1"], "mean_last_3": sum(r["val_top1"] for r in curve[-3:]) / 3}
Path("benchmarks/results/dev_split.json").write_text(json.dumps(out, indent=1))
print(json.dumps({k: round(v["mean_last_3"], 3) for k, v in out["runs"].items()}))
PY
