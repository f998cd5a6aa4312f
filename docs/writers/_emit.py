"""Where a document writer's text goes: the file, or (``--check``) a comparison with it.

``python docs/writers/write_X.py --check`` exits 1 when the committed document is not what
the writer makes from the committed reports: it was edited by hand, or a report changed and
the document was not regenerated. tests/test_docs.py runs the RESULTS and MODEL_CARD
writers that way (RELIABILITY records the Python version and platform it ran on).
"""
from __future__ import annotations

import difflib
import sys
from pathlib import Path


def emit(path: Path, text: str) -> None:
    if "--check" not in sys.argv[1:]:
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
        return
    old = path.read_text(encoding="utf-8") if path.exists() else ""
    if old == text:
        print(f"{path}: up to date")
        return
    diff = list(difflib.unified_diff(old.splitlines(), text.splitlines(), "committed", "generated", lineterm="", n=0))
    print(f"{path} is not what {Path(sys.argv[0]).name} makes from the reports; regenerate it:\n"
          + "\n".join(line[:300] for line in diff[:20]), file=sys.stderr)
    sys.exit(1)
