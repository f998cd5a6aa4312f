# Shared by the benchmark run scripts (source it after `cd` to the project root):
#   tr OUT ARGS...   train into OUT unless OUT/final exists; resumes a run that was cut short
#   ev CKPT SPLIT OUT.json   evaluate unless the report exists
# N3_THREADS=1 leaves a core to another job.
PY=.venv/bin/python
ev() { [ -f "$3" ] || $PY -m n3core evaluate --checkpoint "$1" --split "$2" --out "$3" --no-progress; }
tr() { local out=$1; shift; [ -d "$out/final" ] || $PY -m n3core train --out "$out" --no-progress --threads "${N3_THREADS:-0}" "$@" $( [ -d "$out" ] && echo --resume ); }
