"""Data readers, description files, splits, the episodic sampler, and their errors."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from PIL import Image

from n3core.data import (DataError, EpisodeSampler, ImageError, description_file, display_name, join_phrases,
                         load_descriptions, load_image, load_split, read_cub, read_image_folder, resolve_data_root)


def test_reads_shared_cub(cub, data_root):
    assert len(cub.classes) == 173 and len(cub) == 10208
    assert cub.classes[0] == "001.Black_footed_Albatross"
    assert all(r.path.exists() for r in cub.records[:50])
    assert 45 <= len(cub.indices("014.Indigo_Bunting")) <= 60
    split = load_split(data_root, "ss0")
    assert (len(split["train"]), len(split["val"]), len(split["test"])) == (98, 25, 50)
    sub = cub.subset(split["test"])
    assert sub.classes == split["test"] and {r.label for r in sub.records} == set(split["test"])
    desc = load_descriptions(description_file(data_root, "allaboutbirds"), cub.classes)
    assert len(desc) == 173
    gpt = load_descriptions(description_file(data_root, "gpt4_part_descriptors"))
    assert gpt["001.Black_footed_Albatross"].startswith("back:")


def _fake_cub(tmp_path: Path, with_boxes: bool = True) -> Path:
    root = tmp_path / "CUB_200_2011"
    (root / "images" / "001.Red_Bird").mkdir(parents=True)
    (root / "images" / "003.Blue_Bird").mkdir(parents=True)
    im = Image.new("RGB", (100, 80), (0, 0, 255))
    im.paste((255, 0, 0), (10, 20, 50, 60))          # a red square at x 10..50, y 20..60
    im.save(root / "images" / "001.Red_Bird" / "a.jpg")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(root / "images" / "003.Blue_Bird" / "b.png")
    (root / "classes.txt").write_text("1 001.Red_Bird\n3 003.Blue_Bird\n")
    (root / "images.txt").write_text("10 001.Red_Bird/a.jpg\n11 003.Blue_Bird/b.png\n")
    (root / "image_class_labels.txt").write_text("10 1\n11 3\n")
    if with_boxes:
        (root / "bounding_boxes.txt").write_text("10 10.0 20.0 40.0 40.0\n11 0 0 64 64\n")
    return tmp_path


def test_official_layout_with_boxes_crops(tmp_path):
    s = read_cub(_fake_cub(tmp_path))               # the parent of CUB_200_2011 works too
    assert s.classes == ["001.Red_Bird", "003.Blue_Bird"]
    r = s.records[0]
    assert r.bbox == (10.0, 20.0, 40.0, 40.0)
    im = load_image(r.path, bbox=r.bbox)
    assert im.size == (40, 40)
    px = im.getpixel((20, 20))
    assert px[0] > 200 and px[2] < 60, "the crop is the red box"


def test_cub_errors_name_the_file_and_line(tmp_path):
    root = _fake_cub(tmp_path) / "CUB_200_2011"
    (root / "image_class_labels.txt").write_text("10 1\n11 7\n")
    with pytest.raises(DataError, match=r"image 11 has class id 7"):
        read_cub(root)
    (root / "image_class_labels.txt").write_text("10 1\n11\n")
    with pytest.raises(DataError, match=r"image_class_labels.txt, line 2"):
        read_cub(root)
    (root / "image_class_labels.txt").write_text("10 1\n11 3\n")
    (root / "images" / "003.Blue_Bird" / "b.png").unlink()
    with pytest.raises(DataError, match=r"image 11 not found"):
        read_cub(root)
    (root / "images.txt").unlink()
    with pytest.raises(DataError, match=r"missing file: .*images.txt"):
        read_cub(root)
    with pytest.raises(DataError, match="not a CUB-200-2011 folder"):
        read_cub(tmp_path / "nowhere")


def test_image_folder_reader_and_descriptions(tmp_path):
    for cls, color in (("cardinal", (200, 0, 0)), ("blue jay", (0, 0, 200))):
        (tmp_path / "imgs" / cls).mkdir(parents=True)
        for i in range(3):
            Image.new("RGB", (32, 32), color).save(tmp_path / "imgs" / cls / f"{i}.png")
    (tmp_path / "imgs" / "cardinal" / "notes.txt").write_text("not an image")
    s = read_image_folder(tmp_path / "imgs")
    assert s.classes == ["blue jay", "cardinal"] and len(s) == 6
    d = tmp_path / "descriptions.json"
    d.write_text(json.dumps({"cardinal": "Red all over.", "blue jay": ["crest: blue", "wings: barred."]}))
    desc = load_descriptions(d, s.classes)
    assert desc["blue jay"] == "crest: blue. wings: barred."
    assert join_phrases([" a ", "b."]) == "a. b."


def test_description_errors(tmp_path):
    p = tmp_path / "d.json"
    p.write_text(json.dumps({"a": "text", "b": "  "}))
    with pytest.raises(DataError, match=r"description of 'b' is empty"):
        load_descriptions(p)
    p.write_text(json.dumps({"a": "text"}))
    with pytest.raises(DataError, match=r"no description for class\(es\) c"):
        load_descriptions(p, ["a", "c"])
    p.write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        load_descriptions(p)
    p.write_text(json.dumps({"a": 3}))
    with pytest.raises(DataError, match="must be a string"):
        load_descriptions(p)
    with pytest.raises(DataError, match="not found"):
        load_descriptions(tmp_path / "missing.json")
    with pytest.raises(DataError, match="unknown description set"):
        description_file(tmp_path, "poetry")


def test_class_with_no_images_or_no_description(tmp_path):
    (tmp_path / "imgs" / "empty_class").mkdir(parents=True)
    with pytest.raises(DataError, match="empty_class has no images"):
        read_image_folder(tmp_path / "imgs")
    with pytest.raises(DataError, match="no class sub-folders"):
        read_image_folder(tmp_path / "nothing") if False else read_image_folder(_mkdir(tmp_path / "nothing"))


def _mkdir(p):
    p.mkdir()
    return p


def test_description_with_no_images(cub):
    with pytest.raises(DataError, match="not found"):
        cub.subset(["014.Indigo_Bunting", "999.Imaginary_Bird"])


def test_split_errors(tmp_path):
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "x.json").write_text(json.dumps({"train": ["a", "b"], "val": ["b"], "test": []}))
    with pytest.raises(DataError, match=r"'b' is in both 'train' and 'val'"):
        load_split(tmp_path, "x")
    (tmp_path / "splits" / "y.json").write_text(json.dumps({"train": ["a"]}))
    with pytest.raises(DataError, match="missing list 'val'"):
        load_split(tmp_path, "y")
    with pytest.raises(DataError, match="split file not found"):
        load_split(tmp_path, "ss9")


def test_unreadable_images(tmp_path):
    (tmp_path / "empty.jpg").write_bytes(b"")
    with pytest.raises(ImageError, match=r"empty.jpg: the file is empty"):
        load_image(tmp_path / "empty.jpg")
    (tmp_path / "text.jpg").write_text("hello, I am not a JPEG")
    with pytest.raises(ImageError, match="not an image"):
        load_image(tmp_path / "text.jpg")
    good = tmp_path / "good.jpg"
    Image.new("RGB", (64, 64), (1, 2, 3)).save(good)
    (tmp_path / "trunc.jpg").write_bytes(good.read_bytes()[:200])
    with pytest.raises(ImageError, match="trunc.jpg: cannot read"):
        load_image(tmp_path / "trunc.jpg")
    with pytest.raises(ImageError, match="file not found"):
        load_image(tmp_path / "missing.jpg")


def test_image_modes_and_bombs(tmp_path):
    rgba = Image.new("RGBA", (10, 10), (255, 0, 0, 0))
    p = tmp_path / "a.png"
    rgba.save(p)
    assert load_image(p).getpixel((0, 0)) == (255, 255, 255), "transparent → white"
    Image.new("CMYK", (10, 10), (0, 255, 0, 0)).save(tmp_path / "c.jpg")
    assert load_image(tmp_path / "c.jpg").mode == "RGB"
    Image.new("RGB", (3000, 1000)).save(tmp_path / "big.png")
    assert max(load_image(tmp_path / "big.png").size) == 1024
    with pytest.raises(ImageError, match="too large"):
        load_image(tmp_path / "big.png", max_pixels=1_000_000)


def test_sampler_is_balanced_and_seeded(cub, data_root):
    train = load_split(data_root, "ss0")["train"]
    s = EpisodeSampler(cub.subset(train), train, k=25, batch_size=50, seed=1)
    cls, batch = s.episode(7)
    assert len(cls) == 25 and len(set(cls)) == 25 and set(cls) <= set(train)
    labels = Counter(cub.subset(train).records[i].label for i in batch)
    assert set(labels) == set(cls) and max(labels.values()) == 2
    assert s.episode(7) == EpisodeSampler(cub.subset(train), train, 25, 50, seed=1).episode(7)
    assert s.episode(8)[0] != cls
    with pytest.raises(DataError, match="only 2 classes"):
        EpisodeSampler(cub, cub.classes[:2], k=5, batch_size=4)
    with pytest.raises(DataError, match="at least 2 classes"):
        EpisodeSampler(cub, cub.classes, k=1, batch_size=4)


def test_sampler_draws_are_a_pure_function_of_seed_and_episode(cub, data_root):
    """A resumed run draws exactly the episodes an uninterrupted one would."""
    import random

    train = load_split(data_root, "ss0")["train"]
    plain = EpisodeSampler(cub.subset(train), train, k=25, batch_size=50, seed=1)
    assert plain.episode(7)[0] == random.Random("1-7").sample(train, 25)


def test_data_root_resolution(tmp_path, monkeypatch):
    assert resolve_data_root(str(tmp_path)) == tmp_path
    with pytest.raises(DataError, match="not found"):
        resolve_data_root(str(tmp_path / "nope"))
    monkeypatch.setenv("N3_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataError, match="N3_DATA points to a missing folder"):
        resolve_data_root(None)
    monkeypatch.setenv("N3_DATA", str(tmp_path))
    assert resolve_data_root(None) == tmp_path


def test_display_name():
    assert display_name("014.Indigo_Bunting") == "Indigo Bunting"
    assert display_name("blue jay") == "blue jay"
