"""The generated documents are what their writers make from the committed reports.

docs/RESULTS.md and checkpoints/MODEL_CARD.md say "generated, do not edit by hand": this holds
them to it. A report that changed without the document being regenerated, or a hand edit,
fails here with the first differing lines. (docs/RELIABILITY.md is left out: it records the
Python version and platform it ran on.)
"""
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("writer", ["write_results.py", "write_model_card.py"])
def test_generated_document_is_up_to_date(writer):
    r = subprocess.run([sys.executable, str(ROOT / "docs" / "writers" / writer), "--check"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_check_catches_a_stale_document(tmp_path, monkeypatch):
    sys.path.insert(0, str(ROOT / "docs" / "writers"))
    try:
        from _emit import emit
    finally:
        sys.path.remove(str(ROOT / "docs" / "writers"))
    doc = tmp_path / "DOC.md"
    doc.write_text("old\n")
    monkeypatch.setattr(sys, "argv", ["write_doc.py", "--check"])
    with pytest.raises(SystemExit) as e:
        emit(doc, "new\n")
    assert e.value.code == 1 and doc.read_text() == "old\n"      # reported, not overwritten
    emit(doc, "old\n")                                            # the same text passes
    monkeypatch.setattr(sys, "argv", ["write_doc.py"])
    emit(doc, "new\n")
    assert doc.read_text() == "new\n"
