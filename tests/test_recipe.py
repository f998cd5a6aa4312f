"""The recipe command end to end on a tiny backbone and a few real classes: every stage runs in
order, the packaged checkpoints load and carry their recipe and reports, a finished work
folder is not redone, another recipe is refused, and a run killed with SIGKILL in the middle
of its full stage resumes to the same checkpoint an uninterrupted run writes."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from n3core.checkpoint import load_checkpoint
from n3core.cli import main as cli_main
from n3core.recipe import Recipe, RecipeError, load_recipe, run_recipe
from tests.conftest import ROOT, make_tiny_backbone, tiny_config


def tiny_recipe() -> Recipe:
    model = {k: v for k, v in tiny_config(text_dim=384).to_dict().items() if k not in ("mode", "feature_dim")}
    common = {"k": 3, "batch_size": 6, "eval_every": 2, "checkpoint_every": 2, "warmup_steps": 2, "text_variants": 2,
              "extra_descriptions": ["gpt3_descriptors"]}
    return Recipe(name="n3-tiny",
                  fc_only={"model": {**model, "mode": "fc-only"}, "train": {**common, "max_steps": 4, "feature_views": 2}},
                  full={"model": {**model, "mode": "full"}, "train": {**common, "max_steps": 6, "patience": 2}},
                  match={"members": 2, "kappa": 1.0, "seed": 0,
                         "train": {"steps": 3, "k": 3, "batch_size": 6, "views": 1, "text_variants": 2,
                                   "extra_descriptions": []}},
                  evaluate={"permutations": 2, "control_draws": 1})


@pytest.fixture(scope="module")
def split5(data_root, tmp_path_factory) -> str:
    """5 train / 2 val / 5 test classes of ss0 (hard5 needs five test classes)."""
    from n3core.data import load_split

    s = load_split(data_root, "ss0")
    p = tmp_path_factory.mktemp("split") / "five.json"
    p.write_text(json.dumps({"train": s["train"][:5], "val": s["val"][:2], "test": s["test"][:5]}))
    return str(p)


@pytest.fixture(scope="module")
def finished(split5, tmp_path_factory, text_encoder):
    out = tmp_path_factory.mktemp("recipe") / "run"
    res = run_recipe(tiny_recipe(), split5, out, progress=False, backbone=make_tiny_backbone(),
                     text_encoder=text_encoder, command="python -m n3core recipe (test)")
    return out, res


def test_every_stage_runs_in_order_and_writes_a_shippable_pair(finished, text_encoder):
    from n3core.synthesize import Synthesizer

    out, res = finished
    names = [s["stage"] for s in res["stages"]]
    assert names[:2] == ["fc-only training", "full training"]
    assert names[2:6] == ["sentence match, seed 0", "sentence match, seed 1", "join the matches", "package full"]
    assert all(s["ran"] for s in res["stages"])
    assert all(s["isolated"] for s in res["stages"]), "each stage ran in a process of its own"
    full, fc = Path(res["checkpoints"]["full"]), Path(res["checkpoints"]["fc-only"])
    info = json.loads((full / "checkpoint.json").read_text())
    assert info["dtype"] == "float16" and info["provenance"]["recipe"] == tiny_recipe().to_dict()
    assert info["provenance"]["command"] == "python -m n3core recipe (test)"
    assert [m["seed"] for m in info["sentence_match"]["members"]] == [0, 1]
    w_full, _, _ = load_checkpoint(out / "full" / "best")
    w_pkg, _, _ = load_checkpoint(full)
    for k, v in w_full.items():      # the full model that ships is full/best, plus the matches, in fp16
        torch.testing.assert_close(w_pkg[k], v.half().float())
    synth = Synthesizer.from_checkpoint(full, backbone=make_tiny_backbone(), text_encoder=text_encoder)
    assert synth.match is not None and len(synth.match) == 2
    assert Synthesizer.from_checkpoint(fc, backbone=make_tiny_backbone(), text_encoder=text_encoder).match is None
    stages = [json.loads(line) for line in (out / "stages.jsonl").read_text().splitlines()]
    assert [s["stage"] for s in stages] == names and all(s["wall_min"] >= 0 and s["peak_rss_gb"] > 0 for s in stages)


def test_reports_hold_the_three_way_control(finished):
    _, res = finished
    full, fc = Path(res["checkpoints"]["full"]), Path(res["checkpoints"]["fc-only"])
    reports = sorted(p.name for p in full.glob("eval-*.json"))
    assert len(reports) == 3 and len(list(fc.glob("eval-*.json"))) == 2, reports
    paper = json.loads(next(full.glob("eval-*-test.json")).read_text())
    hard5 = json.loads(next(full.glob("eval-*-test-hard5.json")).read_text())
    delta_only = json.loads(next(full.glob("eval-*-test-delta-only.json")).read_text())
    for r in (paper, hard5, delta_only):
        top1 = r["per_class_top1"]["median"]
        for key, gain in (("swapped_adaptation", "language_gain"), ("swapped_delta", "language_gain_delta"),
                          ("swapped_match", "language_gain_match")):
            assert 0 <= r[key] <= 1 and r[gain] == pytest.approx(top1 - r[key])
            assert len(r[key + "_all"]) == 1, "one control draw, as the recipe says"
    assert paper["protocol"] == "paper" and paper["permutations"] == 2 and hard5["protocol"] == "hard5"
    assert delta_only["sentence_match_kappa"] == 0.0
    assert paper["backbone_passes"] > 0 and delta_only["backbone_passes"] == 0, "κ = 0 reuses every pass"
    # κ = 0: the match is off, so swapping its words changes nothing
    assert delta_only["swapped_match"] == pytest.approx(delta_only["per_class_top1"]["median"])
    fc_paper = json.loads(next(fc.glob("eval-*-test.json")).read_text())
    assert fc_paper["language_gain"] == fc_paper["language_gain_delta"] == fc_paper["language_gain_match"] == 0


def test_a_finished_run_is_not_redone_and_another_recipe_is_refused(finished, split5, text_encoder):
    out, _ = finished
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = run_recipe(tiny_recipe(), split5, out, progress=False, backbone=make_tiny_backbone(),
                       text_encoder=text_encoder)
    assert not any(s["ran"] for s in again["stages"])
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before
    other = tiny_recipe()
    other.match["members"] = 3
    with pytest.raises(RecipeError, match="another recipe"):
        run_recipe(other, split5, out, progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)
    with pytest.raises(RecipeError, match="another split"):
        run_recipe(tiny_recipe(), "ss1", out, progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)


CHILD = r"""
import sys, time
sys.path.insert(0, sys.argv[1])
import torch
from tests.conftest import make_tiny_backbone
from tests.test_recipe import tiny_recipe
from n3core.recipe import run_recipe

step = torch.optim.AdamW.step
def slow(self, *a, **k):             # slow steps, so the parent can kill inside the full stage
    time.sleep(0.3)
    return step(self, *a, **k)
torch.optim.AdamW.step = slow
run_recipe(tiny_recipe(), sys.argv[3], sys.argv[2], progress=False, backbone=make_tiny_backbone(),
           command="python -m n3core recipe (test)", isolate=False)    # in this process: the slow steps apply
"""


def test_sigkill_inside_the_full_stage_then_resume(finished, split5, tmp_path, text_encoder):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), str(out), split5],
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)
    deadline = time.time() + 300
    while not list((out / "full").glob("step-*")):
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.time() < deadline, "the child never reached the full stage's first checkpoint"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert (out / "fconly" / "final").exists() and not (out / "full" / "final").exists()
    fc_written = (out / "fconly" / "final" / "model.safetensors").stat().st_mtime_ns
    res = run_recipe(tiny_recipe(), split5, out, progress=False, backbone=make_tiny_backbone(),
                     text_encoder=text_encoder, command="python -m n3core recipe (test)")
    ran = {s["stage"]: s["ran"] for s in res["stages"]}
    assert ran["fc-only training"] is False and ran["full training"] is True
    assert (out / "fconly" / "final" / "model.safetensors").stat().st_mtime_ns == fc_written, "fc-only never redone"
    ref_out, ref = finished
    for which in ("full", "fc-only"):
        a, _, _ = load_checkpoint(res["checkpoints"][which])
        b, _, _ = load_checkpoint(ref["checkpoints"][which])
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=0)   # fp16 storage of the same weights


def test_recipe_files_are_checked_before_any_work(tmp_path, capsys):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"name": "x", "fc_only": {"model": {"mode": "fc-only"}}, "full": {"train": {"max_stepz": 3}}}))
    with pytest.raises(ValueError, match="max_stepz"):
        load_recipe(bad)
    bad.write_text(json.dumps({"name": "x", "fc_only": {}, "full": {}, "matchh": {}}))
    assert cli_main(["recipe", "--recipe", str(bad), "--out", str(tmp_path / "w")]) == 2
    assert "unknown keys ['matchh']" in capsys.readouterr().err
    assert not (tmp_path / "w").exists(), "nothing written for a bad recipe"
    shipped = load_recipe(ROOT / "checkpoints" / "recipe.json")
    assert shipped.name == "n3-effl0-minilm" and shipped.match["members"] == 3
