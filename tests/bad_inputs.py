"""Hostile and awkward inputs, built in memory: one place for every test that feeds them."""
from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def _png(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(im: Image.Image) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def make_zip(files: dict[str, bytes]) -> bytes:
    """A zip archive in memory: ``{path inside the zip: bytes}``."""
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return buf.getvalue()


def png_bomb(width: int = 20000, height: int = 20000) -> bytes:
    """A valid PNG whose header claims ``width × height`` pixels (a 1×1 image with a patched
    IHDR): what a decompression bomb looks like to a reader before it decodes."""
    raw = bytearray(_png(Image.new("L", (1, 1))))
    ihdr = raw.index(b"IHDR")
    raw[ihdr + 4:ihdr + 12] = struct.pack(">II", width, height)
    crc = zlib.crc32(bytes(raw[ihdr:ihdr + 17])) & 0xFFFFFFFF
    raw[ihdr + 17:ihdr + 21] = struct.pack(">I", crc)
    return bytes(raw)


def good_images() -> dict[str, bytes]:
    """Awkward but valid images: each must load as RGB."""
    rgba = Image.new("RGBA", (40, 30), (200, 0, 0, 0))
    pal = Image.new("P", (40, 30))
    pal.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    pal.info["transparency"] = 0
    buf = io.BytesIO()
    pal.save(buf, format="PNG", transparency=0)
    webp = io.BytesIO()
    Image.new("RGB", (50, 40), (0, 90, 200)).save(webp, format="WEBP")
    big = io.BytesIO()
    Image.new("RGB", (5000, 3000), (10, 120, 10)).save(big, format="JPEG", quality=50)
    grey16 = Image.new("I;16", (32, 32), 40000)
    return {"alpha.png": _png(rgba), "palette.png": buf.getvalue(), "cmyk.jpg": _jpeg(Image.new("CMYK", (32, 32), (0, 200, 0, 0))),
            "photo.webp": webp.getvalue(), "huge.jpg": big.getvalue(), "grey16.png": _png(grey16),
            "tiny.png": _png(Image.new("RGB", (1, 1), (5, 5, 5)))}


def bad_images() -> dict[str, tuple[bytes, str]]:
    """Files that are not usable images, with a regex their error message must match."""
    good = _jpeg(Image.new("RGB", (64, 64), (1, 2, 3)))
    return {"empty.jpg": (b"", "empty"), "notes.jpg": (b"hello, I am a text file", "not an image"),
            "truncated.jpg": (good[:200], "cannot read"), "bomb.png": (png_bomb(), "too large")}
