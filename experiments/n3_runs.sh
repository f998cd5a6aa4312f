#!/usr/bin/env bash
# N3 training runs behind docs/RESULTS.md (the shipped ss0 models and the ps runs of
# experiments/ps_runs.sh are reused, not retrained):
#   1. ss1 and ss2 with the shipped v3 recipe, exactly as the shipped ss0 models were trained
#      (checkpoints/recipe-fconly.json, final step; then recipe-full.json from it, val-selected);
#   2. the gamma / mu0 ablation on ss0 (the paper's table 3): the v3 full stage shortened to 100 steps,
#      from the shipped fc-only checkpoint, for the paper's six (gamma, mu0) settings;
#   3. kept for history (V1=1): both of the above with the v1 recipe (ss1/ss2 full stage 300 steps);
#   4. KEEP=1: the gamma / mu0 runs of 2. with keep_scale (each adapted output channel rescaled to its
#      norm in Theta, so the frozen BatchNorm statistics still fit Theta'), plus gamma = 1 (issue 14);
#      KEEP=zero: the same with delta_init="zero" too (Delta Theta = 0 at the start of the full stage).
# Every run picks its checkpoint on val; each is then evaluated once on its split's test classes.
# Re-running skips finished runs (runs/NAME/final) and finished evaluations. N3_THREADS=1 leaves
# a core to another job. To run two jobs side by side, give each a share:
#   N3_SPLITS="ss1" N3_GM="" ...   and   N3_SPLITS="ss2" N3_GM="" ...   (N3_GM: "gamma:mu0 ...")
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
R=experiments/results/n3
mkdir -p "$R" runs
GM_ALL="0.999:0.001 0.99:0.01 0.9:0.1 0.5:0.5 0.1:0.9 0.01:0.99"

# gm_config BASE GAMMA MU0 OUT.json [KEEP]: the BASE recipe with (gamma, mu0) and a 100-step full stage
# (KEEP as below: 1 adds keep_scale, zero adds keep_scale and delta_init="zero")
gm_config() {
  $PY - "$@" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
r["model"].update(gamma=float(sys.argv[2]), mu_init=float(sys.argv[3]))
keep = sys.argv[5] if len(sys.argv) > 5 else "0"
if keep in ("1", "zero"):
    r["model"]["keep_scale"] = True
if keep == "zero":
    r["model"]["delta_init"] = "zero"
r["train"].update(max_steps=100, eval_every=50, checkpoint_every=50)
json.dump(r, open(sys.argv[4], "w"))
PY
}

for s in ${N3_SPLITS-ss1 ss2}; do
  tr runs/$s-v3-fconly --split $s --config checkpoints/recipe-fconly.json
  ev runs/$s-v3-fconly/final $s "$R/$s-v3-fconly.json"
  tr runs/$s-v3-full --split $s --config checkpoints/recipe-full.json --init-from runs/$s-v3-fconly/final
  ev runs/$s-v3-full/best $s "$R/$s-v3-full.json"
  for m in fconly full; do cp runs/$s-v3-$m/log.jsonl "$R/$s-v3-$m.train.jsonl"; done   # val curves
done
case "${KEEP:=0}" in
  0) tag="" ;;
  1) tag="keep-" ;;
  zero) tag="keepzero-" ;;
  *) echo "KEEP must be 0, 1 or zero, got '$KEEP'" >&2; exit 2 ;;
esac
[ -n "$tag" ] && GM_ALL="1:0.001 $GM_ALL"
for gm in ${N3_GM-$GM_ALL}; do
  g=${gm%:*} m=${gm#*:} name="ss0-v3-${tag}gamma$g-mu$m"
  gm_config checkpoints/recipe-full.json "$g" "$m" runs/$name.json "$KEEP"
  tr runs/$name --split ss0 --config runs/$name.json --init-from checkpoints/n3-effl0-minilm-ss0-fconly
  ev runs/$name/best ss0 "$R/$name.json"
done

if [ "${V1:-0}" = 1 ]; then
  for s in ss1 ss2; do
    tr runs/$s-fconly --split $s --config checkpoints/recipe-fconly-v1.json
    ev runs/$s-fconly/best $s "$R/$s-v1-fconly.json"
    tr runs/$s-full --split $s --config checkpoints/recipe-full-v1.json --init-from runs/$s-fconly/best --max-steps 300
    ev runs/$s-full/best $s "$R/$s-v1-full.json"
  done
  for gm in $GM_ALL; do
    g=${gm%:*} m=${gm#*:} name="ss0-gamma$g-mu$m"
    gm_config checkpoints/recipe-full-v1.json "$g" "$m" runs/$name.json
    tr runs/$name --split ss0 --config runs/$name.json --init-from runs/ss0-fconly/best
    ev runs/$name/best ss0 "$R/ss0-v1-gamma$g-mu$m.json"
  done
fi
