"""Data-set presets on small folders built from the shared photos: the CUB-200 layout with 200
classes, and AWA2 / Flowers / NAB in the image-folder + descriptions.json format; one preset
trained and evaluated end to end through the command line."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from n3core.data import DataError, description_file, load_descriptions
from n3core.datasets import PRESETS, read_images, resolve_split

ROOT = Path(__file__).resolve().parent.parent


def _photos(cub, n: int) -> list[Path]:
    """n photos of n different shared classes where possible (cycling when n > 100)."""
    first = {}
    for r in cub.records:
        first.setdefault(r.label, r.path)
    paths = list(first.values())
    return [Path(paths[i % len(paths)]) for i in range(n)]


def make_folder(cub, root: Path, n_classes: int, per_class: int = 1) -> Path:
    photos = _photos(cub, n_classes * per_class)
    desc = {}
    for c in range(n_classes):
        name = f"class_{c:03d}"
        (root / name).mkdir(parents=True)
        for j in range(per_class):
            (root / name / f"{j}.jpg").symlink_to(photos[c * per_class + j])
        desc[name] = f"Description number {c}: a {['small', 'large', 'brown', 'blue'][c % 4]} animal."
    (root / "descriptions.json").write_text(json.dumps(desc))
    return root


def make_cub200(cub, root: Path) -> Path:
    d = root / "CUB_200_2011"
    (d / "images").mkdir(parents=True)
    photos = _photos(cub, 200)
    classes, images, labels, desc = [], [], [], {}
    for i in range(200):
        name = f"{i + 1:03d}.Species_{i + 1}"
        (d / "images" / name).mkdir()
        (d / "images" / name / "a.jpg").symlink_to(photos[i])
        classes.append(f"{i + 1} {name}")
        images.append(f"{i + 1} {name}/a.jpg")
        labels.append(f"{i + 1} {i + 1}")
        desc[name] = f"Species {i + 1} is a bird."
    (d / "classes.txt").write_text("\n".join(classes) + "\n")
    (d / "images.txt").write_text("\n".join(images) + "\n")
    (d / "image_class_labels.txt").write_text("\n".join(labels) + "\n")
    (root / "descriptions").mkdir()
    (root / "descriptions" / "allaboutbirds.json").write_text(json.dumps(desc))
    return root


@pytest.mark.parametrize("preset,n_classes,sizes", [("cub200", 200, (100, 50, 50)), ("awa2", 50, (27, 13, 10)),
                                                     ("flowers", 102, (62, 20, 20)), ("nab", 30, (18, 6, 6))])
def test_presets_split_the_folder_as_documented(cub, tmp_path, preset, n_classes, sizes):
    root = make_cub200(cub, tmp_path) if preset == "cub200" else make_folder(cub, tmp_path / "data", n_classes)
    images = read_images(root)
    assert len(images.classes) == n_classes
    split = resolve_split(root, f"preset:{preset}", images)
    assert tuple(len(split[p]) for p in ("train", "val", "test")) == sizes
    assert set(split["train"]) | set(split["val"]) | set(split["test"]) == set(images.classes)
    assert resolve_split(root, f"preset:{preset}") == split, "the same folder always gives the same split"
    desc = load_descriptions(description_file(root, "allaboutbirds"), images.classes)
    assert len(desc) == n_classes


def test_preset_errors(cub, tmp_path):
    folder = make_folder(cub, tmp_path / "f", 40)
    with pytest.raises(DataError, match="awa2.*50 classes.*has 40|has 40"):
        resolve_split(folder, "preset:awa2")
    with pytest.raises(DataError, match="expects the cub layout"):
        resolve_split(folder, "preset:cub200")
    with pytest.raises(DataError, match="unknown preset"):
        resolve_split(folder, "preset:imagenet")
    assert set(PRESETS) == {"cub200", "awa2", "flowers", "nab"}


def test_train_and_evaluate_a_preset_from_the_command_line(cub, tmp_path):
    data = make_folder(cub, tmp_path / "awa2", 50, per_class=2)
    out = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "2"}
    cmd = [sys.executable, "-m", "n3core", "train", "--preset", "awa2", "--data", str(data), "--out", str(out),
           "--mode", "fc-only", "--max-steps", "4", "--eval-every", "2", "--k", "5", "--batch-size", "8",
           "--no-progress"]
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    info = json.loads((out / "final" / "checkpoint.json").read_text())
    assert len(info["split"]["train"]) == 27 and info["split"]["name"] == "preset:awa2"
    report = tmp_path / "eval.json"
    r = subprocess.run([sys.executable, "-m", "n3core", "evaluate", "--checkpoint", str(out / "final"), "--preset",
                        "awa2", "--data", str(data), "--out", str(report), "--no-progress", "--permutations", "2"],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    rep = json.loads(report.read_text())
    assert rep["classes"] == 10 and rep["images"] == 20
    assert set(rep["per_class_top1_of_median_run"]) == set(info["split"]["test"])
