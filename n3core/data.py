"""Images, descriptions and class splits; the episodic sampler.

Two readers give the same :class:`ImageSet`:

* :func:`read_cub` reads the CUB-200-2011 layout (``classes.txt``, ``images.txt``,
  ``image_class_labels.txt``, and ``bounding_boxes.txt`` for cropping when present): the
  shared ``cub`` folder (173 species, photos already cropped) and an official full download alike.
* :func:`read_image_folder` reads a user's own data: one sub-folder of images per class.

Descriptions are JSON files ``{class: text}`` or ``{class: [phrase, ...]}`` (phrases are
joined into one text). Splits are JSON ``{"train": [...], "val": [...], "test": [...]}``.

Where the data lives: an explicit path, else ``$N3_DATA``, else ``../shared/data/cub``
(relative to the project root or the working directory) when it exists.

What a person hands the app arrives here too: an uploaded photo (:func:`read_upload`), a
class set as JSON (:func:`read_descriptions_json`), a labelled zip (:func:`read_labelled_zip`),
each turned into images and texts or refused with an error they can act on.
"""
from __future__ import annotations

import io
import json
import os
import random
import unicodedata
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Sequence

from PIL import Image, ImageOps, UnidentifiedImageError

__all__ = [
    "DataError", "ImageError", "ImageRecord", "ImageSet", "EpisodeSampler",
    "DESCRIPTION_SETS", "SPLITS", "read_cub", "read_image_folder", "load_descriptions", "parse_descriptions", "load_split",
    "resolve_data_root", "load_image", "display_name", "read_json", "IMAGE_EXTENSIONS", "MAX_IMAGE_PIXELS",
    "IMAGE_TYPES", "read_upload", "read_descriptions_json", "read_labelled_zip", "name_key", "split_classes",
    "sample_photos", "description_for", "label_from_filename",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")
DESCRIPTION_SETS = ("allaboutbirds", "wikipedia_lead", "gpt3_descriptors", "gpt4_part_descriptors", "cupl_prompts")
SPLITS = ("ss0", "ss1", "ss2", "ps")     # the data folder's standard class splits
# Images above this many pixels are refused (decompression bombs); bigger but allowed
# images are downscaled on load so no caller holds a huge array.
MAX_IMAGE_PIXELS = 64_000_000
MAX_LOADED_SIDE = 1024


class DataError(ValueError):
    """A data folder, description file or split that cannot be used; the message names it."""


class ImageError(DataError):
    """An image that cannot be used: missing, not an image, truncated, or too large."""


@dataclass(frozen=True)
class ImageRecord:
    path: Path
    label: str                       # class key, e.g. "014.Indigo_Bunting"
    bbox: tuple[float, float, float, float] | None = None  # x, y, w, h in pixels


@dataclass
class ImageSet:
    """Images grouped by class, from either reader. ``classes`` keeps the reader's order."""

    root: Path
    classes: list[str]
    records: list[ImageRecord]
    source: str = ""
    _by_class: dict[str, list[int]] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        by = {c: [] for c in self.classes}
        for i, r in enumerate(self.records):
            by.setdefault(r.label, []).append(i)
        self._by_class = by

    def indices(self, label: str) -> list[int]:
        if label not in self._by_class:
            raise DataError(f"class {label!r} is not in {self.root}")
        return self._by_class[label]

    def subset(self, classes: Sequence[str]) -> "ImageSet":
        """Only ``classes``, in that order; an error names any class with no images."""
        missing = [c for c in classes if c not in self._by_class]
        if missing:
            raise DataError(f"classes not found in {self.root}: {', '.join(missing[:5])}")
        empty = [c for c in classes if not self._by_class[c]]
        if empty:
            raise DataError(f"classes with no images in {self.root}: {', '.join(empty[:5])}")
        keep = set(classes)
        return ImageSet(self.root, list(classes), [r for r in self.records if r.label in keep], self.source)

    def __len__(self) -> int:
        return len(self.records)


def display_name(label: str) -> str:
    """``"014.Indigo_Bunting"`` → ``"Indigo Bunting"``; other names unchanged but underscores."""
    head, _, tail = label.partition(".")
    name = tail if head.isdigit() and tail else label
    return name.replace("_", " ")


# ----------------------------------------------------------------------------- locating data
def resolve_data_root(path: str | Path | None = None) -> Path:
    """An explicit path, else ``$N3_DATA``, else ``../shared/data/cub`` when present; always
    absolute, so that record paths stay valid whatever the working directory (or a symlink) is."""
    if path:
        p = Path(path).expanduser().resolve()
        if not p.exists():
            raise DataError(f"data folder not found: {p}")
        return p
    env = os.environ.get("N3_DATA")
    if env:
        p = Path(env).expanduser().resolve()
        if not p.exists():
            raise DataError(f"N3_DATA points to a missing folder: {p}")
        return p
    here = Path(__file__).resolve().parent.parent
    for cand in (here.parent / "shared" / "data" / "cub", Path.cwd().parent / "shared" / "data" / "cub"):
        if cand.exists():
            return cand
    raise DataError("no data folder found: pass --data DIR, set N3_DATA, or place the CUB "
                    "folder at ../shared/data/cub beside the project")


def _cub_dir(root: Path) -> Path:
    root = Path(root)
    if (root / "classes.txt").exists():
        return root
    if (root / "CUB_200_2011" / "classes.txt").exists():
        return root / "CUB_200_2011"
    raise DataError(f"{root} is not a CUB-200-2011 folder: classes.txt not found in it or in {root}/CUB_200_2011")


def _read_table(path: Path, ncols: int) -> list[list[str]]:
    if not path.exists():
        raise DataError(f"missing file: {path}")
    rows = []
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            line = line.strip()
            if not line:
                continue
            parts = line.split(maxsplit=ncols - 1)
            if len(parts) != ncols:
                raise DataError(f"{path}, line {n}: expected {ncols} fields, got {line!r}")
            rows.append(parts)
    return rows


# ----------------------------------------------------------------------------- readers
def read_cub(root: str | Path | None = None, *, check_files: bool = True) -> ImageSet:
    """Read a CUB-200-2011 layout folder (the folder itself or its parent)."""
    cub = _cub_dir(resolve_data_root(root) if root is None else Path(root))
    classes_rows = _read_table(cub / "classes.txt", 2)
    id2class = dict(classes_rows)
    images = {iid: rel for iid, rel in _read_table(cub / "images.txt", 2)}
    labels = {iid: cid for iid, cid in _read_table(cub / "image_class_labels.txt", 2)}
    bboxes = {}
    if (cub / "bounding_boxes.txt").exists():
        for iid, rest in _read_table(cub / "bounding_boxes.txt", 2):
            try:
                bboxes[iid] = tuple(float(v) for v in rest.split())
            except ValueError as e:
                raise DataError(f"{cub / 'bounding_boxes.txt'}: bad box for image {iid}: {rest!r}") from e
    records = []
    for iid, rel in images.items():
        if iid not in labels:
            raise DataError(f"{cub / 'image_class_labels.txt'}: no label for image {iid} ({rel})")
        cid = labels[iid]
        if cid not in id2class:
            raise DataError(f"{cub / 'image_class_labels.txt'}: image {iid} has class id {cid}, "
                            f"which {cub / 'classes.txt'} does not list")
        path = cub / "images" / rel
        if check_files and not path.exists():
            raise DataError(f"{cub / 'images.txt'}: image {iid} not found at {path}")
        records.append(ImageRecord(path, id2class[cid], bboxes.get(iid)))
    return ImageSet(cub, [name for _, name in classes_rows], records, source="cub")


def read_image_folder(root: str | Path) -> ImageSet:
    """One sub-folder of images per class; the sub-folder name is the class name."""
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder not found: {root}")
    classes, records = [], []
    for d in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = []
        for dirpath, dirnames, filenames in os.walk(d, followlinks=False):
            dirnames[:] = sorted(n for n in dirnames if not n.startswith("."))
            files += [Path(dirpath) / n for n in sorted(filenames)
                      if n.lower().endswith(IMAGE_EXTENSIONS) and not n.startswith(".")]
        if not files:
            raise DataError(f"class folder {d} has no images ({', '.join(IMAGE_EXTENSIONS)})")
        classes.append(d.name)
        records += [ImageRecord(f, d.name) for f in files]
    if not classes:
        raise DataError(f"{root} has no class sub-folders (expected one folder of images per class)")
    return ImageSet(root, classes, records, source="folder")


# ----------------------------------------------------------------------------- descriptions and splits
def read_json(path: str | Path, what: str, error: type[Exception] = DataError):
    """The parsed JSON of ``path``, or ``error`` naming ``what`` and the file when it is missing
    (``"<what> not found: <path>"``), unreadable or not valid JSON."""
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} not found: {path}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{path} is not valid JSON ({what}): {e}") from e


def load_descriptions(path: str | Path, classes: Sequence[str] | None = None) -> dict[str, str]:
    """Read ``{class: text}`` or ``{class: [phrases]}``; with ``classes``, check each has one."""
    return parse_descriptions(read_json(path, "description file"), str(path), classes)


def parse_descriptions(raw, source: str, classes: Sequence[str] | None = None) -> dict[str, str]:
    """Decoded JSON ``{class: text}`` or ``{class: [phrases]}`` → ``{class: text}``; errors
    name ``source`` (a file name) and the class."""
    if not isinstance(raw, dict):
        raise DataError(f"{source} must map class names to descriptions (a JSON object)")
    out = {}
    for cls, val in raw.items():
        if isinstance(val, list):
            if not all(isinstance(s, str) for s in val):
                raise DataError(f"{source}: description of {cls!r} is a list with non-strings")
            val = join_phrases(val)
        if not isinstance(val, str):
            raise DataError(f"{source}: description of {cls!r} must be a string or a list of strings")
        if not val.strip():
            raise DataError(f"{source}: description of {cls!r} is empty")
        out[cls] = val
    if classes is not None:
        missing = [c for c in classes if c not in out]
        if missing:
            raise DataError(f"{source}: no description for class(es) {', '.join(missing[:5])}"
                            + (f" and {len(missing) - 5} more" if len(missing) > 5 else ""))
    return out


def join_phrases(phrases: Sequence[str]) -> str:
    """``["beak: short", "wings: red"]`` → ``"beak: short. wings: red."``"""
    parts = [p.strip().rstrip(".") for p in phrases if p.strip()]
    return ". ".join(parts) + ("." if parts else "")


def description_file(root: str | Path, name: str = "allaboutbirds") -> Path:
    """``<root>/descriptions/<name>.json`` of a CUB-style data folder; for an image-folder
    data set without that file, its ``<root>/descriptions.json``."""
    if name not in DESCRIPTION_SETS:
        p = Path(name)
        if p.suffix == ".json" and p.exists():
            return p
        raise DataError(f"unknown description set {name!r}; choose one of {', '.join(DESCRIPTION_SETS)} or a .json path")
    p = Path(root) / "descriptions" / f"{name}.json"
    if not p.exists() and (Path(root) / "descriptions.json").exists():
        return Path(root) / "descriptions.json"
    return p


def load_split(root: str | Path, name: str) -> dict[str, list[str]]:
    """A split file ``splits/<name>.json`` (or a path) with disjoint train/val/test class lists."""
    p = Path(name) if name.endswith(".json") else Path(root) / "splits" / f"{name}.json"
    split = read_json(p, "split file")
    for part in ("train", "val", "test"):
        if not isinstance(split.get(part), list):
            raise DataError(f"{p}: missing list {part!r}")
    seen: dict[str, str] = {}
    for part in ("train", "val", "test"):
        for c in split[part]:
            if c in seen:
                raise DataError(f"{p}: class {c!r} is in both {seen[c]!r} and {part!r}")
            seen[c] = part
    return {k: list(split[k]) for k in ("train", "val", "test")}


# ----------------------------------------------------------------------------- images
def load_image(src, *, max_pixels: int = MAX_IMAGE_PIXELS, max_side: int = MAX_LOADED_SIDE,
               bbox: tuple[float, float, float, float] | None = None, name: str | None = None) -> Image.Image:
    """Open an image file, bytes or file object as RGB, safely.

    EXIF rotation applied; alpha composited on white; palette, CMYK, 16-bit and grey
    converted; the first frame of an animation; images larger than ``max_pixels`` refused
    (decompression bombs); the result downscaled so its longer side is at most ``max_side``.
    Any failure raises :class:`ImageError` naming the file.
    """
    label = name or (str(src) if isinstance(src, (str, Path)) else "uploaded image")
    if isinstance(src, (bytes, bytearray)):
        if len(src) == 0:
            raise ImageError(f"{label}: the file is empty (0 bytes)")
        src = io.BytesIO(src)
    elif isinstance(src, (str, Path)):
        p = Path(src)
        if not p.is_file():
            raise ImageError(f"{label}: file not found")
        if p.stat().st_size == 0:
            raise ImageError(f"{label}: the file is empty (0 bytes)")
    # Pillow's own bomb check (its global MAX_IMAGE_PIXELS) stays as it is: changing that global
    # per call would race between threads (concurrent app sessions). Our stricter limit is
    # checked from the header, before any pixel is decoded.
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            im = Image.open(src)
        with im:
            w, h = im.size
            if w * h > max_pixels:
                raise ImageError(f"{label}: {w}×{h} pixels is too large (limit {max_pixels:,}); refusing a possible decompression bomb")
            if w < 1 or h < 1:
                raise ImageError(f"{label}: image has no pixels")
            im.seek(0)
            if im.format == "JPEG" and max(w, h) > 2 * max_side:
                im.draft("RGB", (max_side, max_side))
            im.load()
            im = ImageOps.exif_transpose(im)
            im = _to_rgb(im)
    except ImageError:
        raise
    except Image.DecompressionBombError as e:
        raise ImageError(f"{label}: too large, refusing a possible decompression bomb ({e})") from e
    except UnidentifiedImageError as e:
        raise ImageError(f"{label}: not an image file (or a format Pillow cannot read)") from e
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{label}: cannot read image ({e})") from e
    if bbox is not None:
        x, y, bw, bh = bbox
        im = im.crop((max(0, int(x)), max(0, int(y)), min(im.width, int(x + bw)), min(im.height, int(y + bh))))
    if max(im.size) > max_side:
        im.thumbnail((max_side, max_side), Image.BICUBIC)
    return im


def _to_rgb(im: Image.Image) -> Image.Image:
    if im.mode == "P":
        im = im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        import numpy as np

        a = np.asarray(im, dtype=np.float64)
        hi = a.max() if a.size else 1.0
        im = Image.fromarray((a / (hi or 1.0) * 255).astype("uint8"), "L")
    if im.mode in ("RGBA", "LA", "PA"):
        bg = Image.new("RGB", im.size, (255, 255, 255))
        bg.paste(im.convert("RGBA"), mask=im.convert("RGBA").getchannel("A"))
        return bg
    if im.mode == "F":
        im = im.convert("L")
    return im.convert("RGB") if im.mode != "RGB" else im


# ----------------------------------------------------------------------------- episodes
class EpisodeSampler:
    """Episodes for meta-training: K classes drawn from ``classes``, then a mini-batch of
    ``batch_size`` images of those classes (balanced over classes), seeded. Deterministic given
    ``seed`` and the episode number, so a resumed run draws exactly what an uninterrupted one would.
    """

    def __init__(self, images: ImageSet, classes: Sequence[str], k: int, batch_size: int, seed: int = 0):
        if k < 2:
            raise DataError(f"an episode needs at least 2 classes, got K={k}")
        if len(classes) < k:
            raise DataError(f"K={k} classes per episode but only {len(classes)} classes to draw from")
        self.images, self.classes, self.k, self.batch_size, self.seed = images, list(classes), k, batch_size, seed
        for c in self.classes:
            if not images.indices(c):
                raise DataError(f"class {c!r} has no images")

    def episode(self, n: int) -> tuple[list[str], list[int]]:
        """Episode ``n``: its classes and its mini-batch of record indices."""
        rng = random.Random(f"{self.seed}-{n}")
        cls = rng.sample(self.classes, self.k)
        pools = {c: rng.sample(self.images.indices(c), len(self.images.indices(c))) for c in cls}
        order = [cls[i % self.k] for i in range(self.batch_size)]
        rng.shuffle(order)
        batch = []
        for c in order:
            if not pools[c]:          # a class with fewer photos than its share of the batch
                pools[c] = rng.sample(self.images.indices(c), len(self.images.indices(c)))
            batch.append(pools[c].pop())
        return cls, batch


IMAGE_TYPES = ("jpg", "jpeg", "png", "webp")
MAX_UPLOAD_BYTES = 50 * 2**20          # one image file
MAX_ZIP_FILES = 5000
MAX_ZIP_BYTES = 1 * 2**30              # uncompressed total


# ----------------------------------------------------------------------------- uploads (the app's)
def read_upload(name: str, data: bytes, *, max_bytes: int = MAX_UPLOAD_BYTES) -> Image.Image:
    """Bytes of one uploaded file → an RGB PIL image, or :class:`ImageError` saying why not."""
    if data is None or len(data) == 0:
        raise ImageError(f"{name}: the file is empty (0 bytes)")
    if len(data) > max_bytes:
        raise ImageError(f"{name}: {len(data) / 2**20:.0f} MB is larger than the {max_bytes / 2**20:.0f} MB limit")
    return load_image(bytes(data), name=name)


def read_descriptions_json(data: bytes | str, *, name: str = "descriptions.json") -> dict[str, str]:
    """A JSON object ``{class: text}`` (or ``{class: [phrases]}``) → ``{class: text}``."""
    if isinstance(data, bytes):
        try:
            data = data.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise DataError(f"{name} is not UTF-8 text ({e})") from e
    try:
        raw = json.loads(data)
    except json.JSONDecodeError as e:
        raise DataError(f"{name} is not valid JSON: {e}") from e
    if not isinstance(raw, dict) or not raw:
        raise DataError(f"{name} must be a non-empty JSON object mapping class names to descriptions")
    return parse_descriptions(raw, name)             # the same checks as description files


def name_key(name: str) -> str:
    """How class names compare when a person typed one of them (zip folders, photo names):
    case, ``_``/``-``/spaces and a ``NNN.`` prefix ignored."""
    return " ".join(unicodedata.normalize("NFKC", display_name(name)).replace("-", " ").casefold().split())


def read_labelled_zip(data: bytes, classes: Sequence[str], *, max_files: int = MAX_ZIP_FILES,
                      max_bytes: int = MAX_ZIP_BYTES) -> tuple[list[Image.Image], list[int], list[str]]:
    """A zip in the image-folder layout (``<class>/<image>``, at any depth below one common
    top folder) → images, label indices into ``classes``, and a list of problems (files
    skipped and why). Folder names match classes ignoring case, ``_``/``-``/spaces and a
    ``NNN.`` prefix. Raises :class:`DataError` when nothing usable is in it."""
    try:
        zf = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, ValueError) as e:
        raise DataError(f"not a zip file ({e})") from e
    index = {name_key(c): i for i, c in enumerate(classes)}
    infos = [i for i in zf.infolist() if not i.is_dir() and not PurePosixPath(i.filename).name.startswith(".")
             and "__MACOSX" not in i.filename]
    if len(infos) > max_files:
        raise DataError(f"the zip holds {len(infos)} files; the limit is {max_files}")
    total = sum(i.file_size for i in infos)
    if total > max_bytes:
        raise DataError(f"the zip unpacks to {total / 2**20:.0f} MB; the limit is {max_bytes / 2**20:.0f} MB")
    images, labels, problems = [], [], []
    unknown: dict[str, int] = {}
    for info in infos:
        parts = PurePosixPath(info.filename).parts
        if len(parts) < 2:
            problems.append(f"{info.filename}: not inside a class folder")
            continue
        folder = parts[-2]
        if name_key(folder) not in index:
            unknown[folder] = unknown.get(folder, 0) + 1
            continue
        if PurePosixPath(info.filename).suffix.lower().lstrip(".") not in IMAGE_TYPES:
            problems.append(f"{info.filename}: not a jpg, png or webp file")
            continue
        try:
            with zf.open(info) as f:
                raw = f.read(MAX_UPLOAD_BYTES + 1)
            images.append(read_upload(info.filename, raw))
            labels.append(index[name_key(folder)])
        except (ImageError, zipfile.BadZipFile, OSError, RuntimeError) as e:
            problems.append(str(e))
    for folder, n in unknown.items():
        problems.append(f"folder {folder!r} ({n} files) matches no class; skipped")
    if not images:
        raise DataError("no usable images in the zip: it needs one folder per class, named like the classes"
                        + (f" ({'; '.join(problems[:3])})" if problems else ""))
    return images, labels, problems


def split_classes(root: str | Path, split: str, part: str = "test", description_set: str = "allaboutbirds"
                  ) -> dict[str, str]:
    """``{display name: description}`` for the classes of one part of a split, in split order.
    Classes the description set does not cover (Wikipedia covers 52 of 100) are left out."""
    labels = load_split(root, split)[part]
    desc = load_descriptions(description_file(root, description_set))
    out = {display_name(c): desc[c] for c in labels if c in desc}
    if len(out) < 2:
        raise DataError(f"{description_set} describes only {len(out)} of the {len(labels)} {part} classes of {split}")
    return out


def sample_photos(root: str | Path, classes: Sequence[str], per_class: int = 2, seed: int = 0
                  ) -> list[tuple[str, Path]]:
    """``(class display name, path)`` for a few photos of each named class in a CUB-layout folder."""
    ims = read_cub(root, check_files=False)
    by_name: dict[str, list[Path]] = {}
    for rec in ims.records:
        by_name.setdefault(display_name(rec.label), []).append(Path(rec.path))
    rng = random.Random(seed)
    out = []
    for c in classes:
        paths = sorted(by_name.get(c, []))
        out += [(c, p) for p in rng.sample(paths, min(per_class, len(paths)))]
    return out


def description_for(root: str | Path, cls: str, description_set: str) -> str:
    """One class's description (by display name, compared like zip folders) from a description
    set of the data folder; :class:`DataError` when the set does not describe it."""
    desc = load_descriptions(description_file(root, description_set))
    for label, text in desc.items():
        if name_key(label) == name_key(cls):
            return text
    raise DataError(f"{description_set} has no description of {cls!r}")


def label_from_filename(name: str, classes: Sequence[str]) -> int | None:
    """The class a photo's name says it shows, or None: ``"Blue Jay — 0042.jpg"`` (the app's
    data-folder photos), ``"blue_jay_2.jpg"`` (the demo's) or ``"073.Blue_Jay/x.jpg"``;
    names compare like zip folders (case, ``_``/``-``/spaces and a ``NNN.`` prefix ignored)."""
    import re

    index = {name_key(c): i for i, c in enumerate(classes)}
    if " — " in name:
        candidates = [name.split(" — ", 1)[0]]
    else:
        path = PurePosixPath(name)
        candidates = [path.stem, re.sub(r"[ _-]*\(?\d+\)?$", "", path.stem), path.parent.name]
    for candidate in candidates:
        if candidate and name_key(candidate) in index:
            return index[name_key(candidate)]
    return None
