"""The bad-input suite: every hostile or awkward input we feed N3, what it must get, and what
it does get. ``tests/test_reliability.py`` runs each case; ``docs/writers/write_reliability.py``
runs them again and writes ``docs/RELIABILITY.md`` from the outcomes.

A case is ``fn(ctx) -> str``: it asserts the required behaviour (a clear error of the right
kind, or a correct result, and nothing written where it should not be) and returns a short
description of the outcome for the report. ``ctx`` gives a scratch folder and the shared
models.
"""
from __future__ import annotations

import io
import json
import os
import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from PIL import Image

from bad_inputs import _jpeg, _png, png_bomb

ROOT = Path(__file__).resolve().parent.parent
FCONLY = ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly"


@dataclass
class Case:
    area: str
    name: str
    expect: str
    fn: Callable


CASES: list[Case] = []


def case(area: str, name: str, expect: str):
    def deco(fn):
        CASES.append(Case(area, name, expect, fn))
        return fn
    return deco


def raises(exc, fn, *args, match: str | None = None, **kw) -> str:
    import re

    try:
        fn(*args, **kw)
    except exc as e:
        msg = str(e)
        assert match is None or re.search(match, msg), f"message {msg!r} does not match {match!r}"
        return f"{type(e).__name__}: {msg[:160]}"
    raise AssertionError(f"no {exc.__name__} raised")


# ---------------------------------------------------------------------------- descriptions
DEMO = {"Blue Jay": "A large crested songbird, bright blue above and white below.",
        "Cedar Waxwing": "A sleek tan bird with a black mask and a yellow tail tip."}


def _synth_with(ctx, text: str) -> str:
    clf = ctx.synth.synthesize({**DEMO, "Odd": text})
    p = clf.predict(Image.new("RGB", (64, 64), (90, 120, 200)))
    assert p.shape == (1, 3) and abs(float(p.sum()) - 1) < 1e-4
    trunc = clf.info["truncated"]
    return "synthesized a 3-way classifier" + (f"; truncation reported for {trunc}" if trunc else "")


@case("descriptions", "empty string", "clear error")
def _(ctx):
    from n3core.meta import SynthesisError
    return raises(SynthesisError, ctx.synth.synthesize, {**DEMO, "Odd": ""}, match="'Odd' is empty")


@case("descriptions", "whitespace only", "clear error")
def _(ctx):
    from n3core.meta import SynthesisError
    return raises(SynthesisError, ctx.synth.synthesize, {**DEMO, "Odd": " \n\t\u3000 "}, match="is empty")


@case("descriptions", "10,000 words", "result, truncation reported")
def _(ctx):
    out = _synth_with(ctx, "red crest black mask " * 2500)
    assert "truncation reported" in out
    return out


@case("descriptions", "characters from every Unicode plane", "result")
def _(ctx):
    text = "Bird 鳥 🐦 𝔅𝔦𝔯𝔡 \U00020000 \U00030000 \U000E0041 \U000F0000 \U0010FFFD é ß ﬁ"
    return _synth_with(ctx, text)


@case("descriptions", "control characters, NUL, zero-width and bidi overrides", "result")
def _(ctx):
    return _synth_with(ctx, "red\x00 wing\x07s \x1b[31m crest\u200b\u202e reversed\u202c \x7f end\r\n")


@case("descriptions", "lone surrogate", "clear error or result")
def _(ctx):
    from n3core.meta import SynthesisError
    from n3core.text import TextEncoderError
    try:
        return _synth_with(ctx, "half a pair \ud800 here")
    except (SynthesisError, TextEncoderError) as e:
        return f"{type(e).__name__}: {e}"


@case("descriptions", "HTML and markdown injection", "result; shown escaped, never rendered")
def _(ctx):
    import html
    import re

    from n3core.explain import Word
    from n3core.figures import evidence_html
    text = "<script>alert(1)</script><img src=x onerror=alert(2)> **bold** [x](javascript:alert(3)) &amp;"
    out = _synth_with(ctx, text)
    h = evidence_html(text, [Word("script", 1.0, "Odd", 1, 7)], positive=True)
    assert "<script" not in h and "<img" not in h
    assert html.unescape(re.sub(r"<[^>]+>", "", h)) == text
    return out + "; evidence HTML shows the text literally"


@case("descriptions", "duplicate class names differing only in case/width", "clear error")
def _(ctx):
    from n3core.meta import SynthesisError
    return raises(SynthesisError, ctx.synth.synthesize, {"Blue Jay": "a", "ＢＬＵＥ ＪＡＹ": "b"}, match="duplicate")


@case("descriptions", "one class", "clear error")
def _(ctx):
    from n3core.meta import SynthesisError
    return raises(SynthesisError, ctx.synth.synthesize, {"Blue Jay": "a blue bird"}, match="at least 2")


# ---------------------------------------------------------------------------- images
def _load(data: bytes, name: str):
    from n3core.data import read_upload
    return read_upload(name, data)


def _bad_image(name: str, data: bytes, match: str) -> str:
    from n3core.data import ImageError
    return raises(ImageError, _load, data, name, match=match)


@case("images", "zero bytes", "clear error")
def _(ctx):
    return _bad_image("empty.jpg", b"", "empty")


@case("images", "truncated JPEG", "clear error")
def _(ctx):
    return _bad_image("cut.jpg", _jpeg(Image.new("RGB", (64, 64), (1, 2, 3)))[:300], "cannot read")


@case("images", "text file named .jpg", "clear error")
def _(ctx):
    return _bad_image("notes.jpg", b"Dear diary, today I saw a jay.", "not an image")


@case("images", "20000×20000 decompression bomb", "clear error, nothing decoded")
def _(ctx):
    return _bad_image("bomb.png", png_bomb(), "too large")


@case("images", "1×1 pixel", "result")
def _(ctx):
    im = _load(_png(Image.new("RGB", (1, 1), (9, 9, 9))), "dot.png")
    p = ctx.classifier.predict(im)
    assert p.shape == (1, 2)
    return f"loaded {im.size}, classified"


@case("images", "CMYK JPEG", "result (converted to RGB)")
def _(ctx):
    im = _load(_jpeg(Image.new("CMYK", (32, 32), (0, 255, 255, 0))), "cmyk.jpg")
    assert im.mode == "RGB" and im.getpixel((5, 5))[0] > 200
    return "RGB, colours kept"


@case("images", "16-bit greyscale PNG", "result")
def _(ctx):
    im = _load(_png(Image.new("I;16", (16, 16), 65535)), "g16.png")
    assert im.mode == "RGB" and im.getpixel((0, 0))[0] > 200
    return "RGB, white stays white"


@case("images", "palette PNG with transparency", "result (transparent → white)")
def _(ctx):
    pal = Image.new("P", (8, 8), 0)
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    im = _load(buf.getvalue(), "pal.png")
    assert im.getpixel((0, 0)) == (255, 255, 255)
    return "RGB, transparent pixels white"


@case("images", "EXIF-rotated JPEG", "result, upright")
def _(ctx):
    im = Image.new("RGB", (40, 20), (200, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6                                   # rotate 90° CW on display
    buf = io.BytesIO()
    im.save(buf, format="JPEG", exif=exif)
    out = _load(buf.getvalue(), "rot.jpg")
    assert out.size == (20, 40)
    return "rotated by its EXIF orientation: 40×20 → 20×40"


@case("images", "animated GIF", "result (first frame)")
def _(ctx):
    frames = [Image.new("RGB", (16, 16), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    im = _load(buf.getvalue(), "anim.gif")
    assert im.getpixel((1, 1))[0] > 200
    return "first frame used"


@case("images", "animated WebP", "result (first frame)")
def _(ctx):
    frames = [Image.new("RGB", (16, 16), c) for c in ((0, 255, 0), (255, 0, 0))]
    buf = io.BytesIO()
    frames[0].save(buf, format="WEBP", save_all=True, append_images=frames[1:], duration=100, lossless=True)
    im = _load(buf.getvalue(), "anim.webp")
    assert im.getpixel((1, 1))[1] > 200
    return "first frame used"


@case("images", "very large (6000×4000) photo", "result, downscaled")
def _(ctx):
    buf = io.BytesIO()
    Image.new("RGB", (6000, 4000), (10, 120, 10)).save(buf, format="JPEG", quality=40)
    im = _load(buf.getvalue(), "big.jpg")
    assert max(im.size) <= 1024
    return f"downscaled to {im.size[0]}×{im.size[1]}"


# ---------------------------------------------------------------------------- checkpoints
def _copy_ckpt(ctx, name: str) -> Path:
    d = ctx.tmp / name
    shutil.copytree(FCONLY, d)
    return d


def _load_ckpt(ctx, d: Path, **kw):
    from n3core.synthesize import Synthesizer
    return Synthesizer.from_checkpoint(d, device="cpu", text_encoder=ctx.synth.text_encoder, **kw)


@case("checkpoints", "another backbone's checkpoint", "clear error")
def _(ctx):
    from n3core.backbones import create_backbone
    from n3core.checkpoint import CheckpointError
    d = _copy_ckpt(ctx, "wrongbb")
    return raises(CheckpointError, _load_ckpt, ctx, d, backbone=create_backbone("resnet18"), match="backbone")


@case("checkpoints", "truncated weights file", "clear error")
def _(ctx):
    from n3core.checkpoint import CheckpointError
    d = _copy_ckpt(ctx, "trunc")
    f = d / "model.safetensors"
    f.write_bytes(f.read_bytes()[:1000])
    return raises(CheckpointError, _load_ckpt, ctx, d)


@case("checkpoints", "a pickle renamed to .safetensors (checksum updated to match)", "clear error; the pickle never runs")
def _(ctx):
    import hashlib

    from n3core.checkpoint import CheckpointError
    d = _copy_ckpt(ctx, "pickle")
    marker = ctx.tmp / "PWNED"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    data = pickle.dumps({"mu": Evil()})
    (d / "model.safetensors").write_bytes(data)
    info = json.loads((d / "checkpoint.json").read_text())
    info["files"]["model.safetensors"] = hashlib.sha256(data).hexdigest()
    (d / "checkpoint.json").write_text(json.dumps(info))
    out = raises(CheckpointError, _load_ckpt, ctx, d)
    assert not marker.exists(), "the pickle was executed"
    return out + " (payload not executed)"


@case("checkpoints", "edited JSON (architecture changed)", "clear error")
def _(ctx):
    from n3core.checkpoint import CheckpointError
    d = _copy_ckpt(ctx, "edited")
    info = json.loads((d / "checkpoint.json").read_text())
    info["config"]["d_model"] = 96
    (d / "checkpoint.json").write_text(json.dumps(info))
    return raises(CheckpointError, _load_ckpt, ctx, d, match="do not fit|config")


@case("checkpoints", "JSON that is not JSON", "clear error")
def _(ctx):
    from n3core.checkpoint import CheckpointError
    d = _copy_ckpt(ctx, "badjson")
    (d / "checkpoint.json").write_text("{ not json")
    return raises(CheckpointError, _load_ckpt, ctx, d, match="JSON")


@case("checkpoints", "checksum mismatch (one byte flipped)", "clear error")
def _(ctx):
    from n3core.checkpoint import CheckpointError
    d = _copy_ckpt(ctx, "flip")
    f = d / "model.safetensors"
    b = bytearray(f.read_bytes())
    b[-10] ^= 0xFF
    f.write_bytes(bytes(b))
    return raises(CheckpointError, _load_ckpt, ctx, d, match="damaged|SHA-256")


# ---------------------------------------------------------------------------- data folders
def _folder(ctx, name: str, classes: dict[str, int]) -> Path:
    root = ctx.tmp / name
    for c, n in classes.items():
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            Image.new("RGB", (8, 8), (i, 0, 0)).save(root / c / f"{i}.jpg")
    return root


@case("data folders", "class with no description", "clear error")
def _(ctx):
    from n3core.data import DataError, load_descriptions
    root = _folder(ctx, "nodesc", {"A": 1, "B": 1})
    (root / "descriptions.json").write_text(json.dumps({"A": "red"}))
    return raises(DataError, load_descriptions, root / "descriptions.json", ["A", "B"], match="B")


@case("data folders", "class folder with no images", "clear error")
def _(ctx):
    from n3core.data import DataError, read_image_folder
    root = _folder(ctx, "noimg", {"A": 1, "B": 0})
    return raises(DataError, read_image_folder, root, match="no images")


@case("data folders", "unreadable image files (directory named .jpg, dangling symlink)", "clear error naming the file")
def _(ctx):
    from n3core.data import ImageError, load_image
    root = _folder(ctx, "unread", {"A": 1})
    (root / "A" / "dir.jpg").mkdir()
    (root / "A" / "gone.jpg").symlink_to(root / "nowhere.jpg")
    a = raises(ImageError, load_image, root / "A" / "dir.jpg", match="dir.jpg")
    b = raises(ImageError, load_image, root / "A" / "gone.jpg", match="gone.jpg")
    return f"{a}; {b}"


@case("data folders", "symlink loop inside a class folder", "result, loop not followed")
def _(ctx):
    from n3core.data import read_image_folder
    root = _folder(ctx, "loop", {"A": 2, "B": 1})
    (root / "A" / "again").symlink_to(root / "A", target_is_directory=True)
    ims = read_image_folder(root)
    assert len(ims) == 3
    return f"read {len(ims)} images, the loop was not followed"


@case("data folders", "zip upload bigger than its limits", "clear error")
def _(ctx):
    import zipfile

    from n3core.data import DataError
    from n3core.data import read_labelled_zip
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as z:
        z.writestr("A/zeros.jpg", b"\0" * (8 * 2**20))     # 8 MB that packs to a few KB
    return raises(DataError, read_labelled_zip, buf.getvalue(), ["A", "B"], max_bytes=2**20, match="unpacks")
