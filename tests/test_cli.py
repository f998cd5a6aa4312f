"""The command line, end to end, with the shipped checkpoints on a small image folder of real
photos (the user's-own-data path)."""
from __future__ import annotations

import json
import shutil

import pytest

from n3core.cli import main
from tests.conftest import ROOT

CK = ROOT / "checkpoints" / "n3-effl0-minilm-ss0"
CLASSES = {"014.Indigo_Bunting": "Indigo Bunting", "073.Blue_Jay": "Blue Jay", "087.Mallard": "Mallard"}
DESC = {"Indigo Bunting": "A small finch-like songbird; the male is vivid blue all over with a darker face.",
        "Blue Jay": "A large crested songbird, blue above with black bars, white below, a black necklace.",
        "Mallard": "A large duck; the male has a glossy green head, a white collar, a yellow bill and a grey body."}


@pytest.fixture(scope="module")
def folder(cub, tmp_path_factory):
    root = tmp_path_factory.mktemp("user_data")
    for key, name in CLASSES.items():
        (root / "images" / name).mkdir(parents=True)
        for i in cub.indices(key)[:3]:
            shutil.copy(cub.records[i].path, root / "images" / name)
    (root / "descriptions.json").write_text(json.dumps(DESC))
    return root


def test_evaluate_hard5_and_the_control_on_a_folder_say_what_is_wrong(folder, tmp_path, capsys):
    base = ["evaluate", "--checkpoint", str(CK), "--images", str(folder / "images"), "--descriptions",
            str(folder / "descriptions.json"), "--no-progress"]
    assert main(base + ["--protocol", "hard5"]) == 2
    assert "at least 5 classes" in capsys.readouterr().err
    one = tmp_path / "control.json"
    one.write_text(json.dumps({"Mallard": "shared with the evaluated set", "Hawk": "A soaring hawk."}))
    assert main(base + ["--permutations", "1", "--control-descriptions", str(one)]) == 2
    assert "at least 2 other classes" in capsys.readouterr().err
    two = tmp_path / "control2.json"
    two.write_text(json.dumps({"Hawk": "A soaring hawk of open country.", "Heron": "A tall grey wading bird.",
                               "Owl": "A round-headed night hunter."}))
    out = tmp_path / "r.json"
    assert main(base + ["--permutations", "1", "--control-descriptions", str(two), "--out", str(out)]) == 0
    r = json.loads(out.read_text())
    assert r["language_gain"] == pytest.approx(r["per_class_top1"]["median"] - r["swapped_adaptation"])
    assert "language_gain" in capsys.readouterr().out


def test_evaluate_an_image_folder(folder, capsys):
    out = folder / "report.json"
    rc = main(["evaluate", "--checkpoint", str(CK), "--images", str(folder / "images"), "--descriptions",
               str(folder / "descriptions.json"), "--permutations", "3", "--out", str(out), "--no-progress"])
    assert rc == 0
    r = json.loads(out.read_text())
    assert r["classes"] == 3 and r["images"] == 9 and len(r["per_class_top1"]["all"]) == 3
    assert 0 <= r["per_class_top1"]["median"] <= 1 and r["per_class_top5"]["median"] == 1.0
    assert "per-class top-1" in capsys.readouterr().out


def test_synthesize_and_explain(folder, tmp_path):
    assert main(["synthesize", "--checkpoint", str(CK), "--descriptions", str(folder / "descriptions.json"),
                 "--out", str(tmp_path / "clf.pt")]) == 0
    assert (tmp_path / "clf.pt").stat().st_size > 1e6
    img = next((folder / "images" / "Mallard").iterdir())
    assert main(["explain", "--checkpoint", str(CK), "--descriptions", str(folder / "descriptions.json"),
                 "--image", str(img), "--out", str(tmp_path / "ex")]) == 0
    r = json.loads((tmp_path / "ex" / "explanation.json").read_text())
    assert set(r["probabilities"]) == set(DESC) and r["fc_only_predicted"] in DESC
    assert r["positive_evidence"] and all(w["cls"] == r["label"] for w in r["positive_evidence"])
    assert len(r["adaptation_norms"]) == 147
    assert [s["sentence"] for s in r["sentence_ablation"]] and r["saliency_maps"] == ["saliency-full.png", "saliency-fc-only.png"]
    for name in r["saliency_maps"] + ["adaptation-norms.html"]:
        assert (tmp_path / "ex" / name).stat().st_size > 1000


def test_clear_errors(folder, tmp_path, capsys):
    bad = tmp_path / "one.json"
    bad.write_text(json.dumps({"Mallard": DESC["Mallard"]}))
    assert main(["synthesize", "--checkpoint", str(CK), "--descriptions", str(bad), "--out", str(tmp_path / "x.pt")]) == 2
    assert "at least 2 classes" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(tmp_path / "nope"), "--split", "ss0"]) == 2
    assert "checkpoint folder not found" in capsys.readouterr().err
    missing = tmp_path / "d.json"
    missing.write_text(json.dumps({"Mallard": "duck", "Blue Jay": "jay"}))
    assert main(["evaluate", "--checkpoint", str(CK), "--images", str(folder / "images"), "--descriptions",
                 str(missing)]) == 2
    assert "no description for class(es) Indigo Bunting" in capsys.readouterr().err


def test_package_makes_a_small_fp16_checkpoint(tmp_path):
    from n3core.checkpoint import load_checkpoint, read_checkpoint_info

    assert main(["package", "--checkpoint", str(CK), "--out", str(tmp_path / "p"), "--note", "who=test"]) == 0
    info = read_checkpoint_info(tmp_path / "p")
    assert info["dtype"] == "float16" and info["provenance"]["who"] == "test" and "optimizer.safetensors" not in info["files"]
    w, _, _ = load_checkpoint(tmp_path / "p")
    assert all(v.dtype.is_floating_point for v in w.values())
