# Shared by the benchmark run scripts (source it after `cd` to the project root):
#   tr OUT ARGS...   train into OUT unless OUT/final exists; resumes a run that was cut short
#   ev CKPT SPLIT OUT.json [ARGS...]   evaluate unless the report exists (ARGS: more evaluate flags)
#   tm OUT ARGS...   train a sentence match into checkpoint OUT unless it exists
#   recipe BASE.json OUT.json '{"model": {...}, "train": {...}}'   BASE with those settings changed
#   claim NAME   true for the first of several side-by-side shares to ask (mkdir runs/NAME.claim)
# N3_THREADS=1 leaves a core to another job.
PY=.venv/bin/python
ev() { [ -f "$3" ] || $PY -m n3core evaluate --checkpoint "$1" --split "$2" --out "$3" --no-progress "${@:4}"; }
tr() { local out=$1; shift; [ -d "$out/final" ] || $PY -m n3core train --out "$out" --no-progress --threads "${N3_THREADS:-0}" "$@" $( [ -d "$out" ] && echo --resume ); }
tm() { local out=$1; shift; [ -d "$out" ] || $PY -m n3core train-match --out "$out" --no-progress --threads "${N3_THREADS:-0}" "$@"; }
claim() { mkdir "runs/$1.claim" 2>/dev/null; }
recipe() {
  $PY - "$@" <<'PY'
import json, sys
base, out, changes = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
r = json.load(open(base))
for section in ("model", "train"):
    r[section].update(changes.pop(section, {}))
if changes:
    sys.exit(f"recipe: unknown sections {sorted(changes)}; expected 'model' and 'train'")
json.dump(r, open(out, "w"))
PY
}
