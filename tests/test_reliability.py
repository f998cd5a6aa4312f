"""Runs every case of the bad-input suite (tests/reliability_cases.py): each must end in a
clear error or a correct result, never a crash. docs/RELIABILITY.md is written from the same
cases by docs/writers/write_reliability.py."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from reliability_cases import CASES, DEMO, FCONLY


@pytest.fixture(scope="module")
def shared():
    from n3core.synthesize import Synthesizer

    synth = Synthesizer.from_checkpoint(FCONLY, device="cpu")
    return SimpleNamespace(synth=synth, classifier=synth.synthesize(DEMO))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.area}: {c.name}" for c in CASES])
def test_case(case, shared, tmp_path):
    ctx = SimpleNamespace(tmp=tmp_path, **vars(shared))
    outcome = case.fn(ctx)
    assert isinstance(outcome, str) and outcome


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.text(min_size=0, max_size=300))
def test_any_text_synthesizes_or_gets_a_clear_error(shared, text):
    from n3core.meta import SynthesisError
    from n3core.text import TextEncoderError

    try:
        clf = shared.synth.synthesize({**DEMO, "Any": text})
    except (SynthesisError, TextEncoderError) as e:
        assert str(e)
        assert not text.strip() or "surrogate" in str(e).lower() or "text" in str(e).lower(), str(e)
        return
    assert clf.fc.weight.shape[0] == 3
    assert bool(clf.fc.weight.isfinite().all())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.dictionaries(st.text(max_size=20), st.text(max_size=40), max_size=4))
def test_any_class_set_synthesizes_or_gets_a_clear_error(shared, descriptions):
    from n3core.meta import SynthesisError
    from n3core.text import TextEncoderError

    try:
        clf = shared.synth.synthesize(descriptions)
    except (SynthesisError, TextEncoderError) as e:
        assert str(e)
        return
    assert clf.class_names == list(descriptions) and len(descriptions) >= 2
