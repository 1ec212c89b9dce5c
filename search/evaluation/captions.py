"""Load image-caption benchmark files (Karpathy JSON, COCO captions JSON, CSV/TSV).

Everything becomes one ``CaptionSet``: a list of image paths (relative to an images folder
the user names), a flat list of captions, and for each caption the index of its image.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from search.errors import InputError

__all__ = ["CaptionSet", "load_caption_set", "IMAGE_COLUMNS", "CAPTION_COLUMNS"]

# Header names recognised case-insensitively. "image_name" / "comment" are the columns of
# the widely shared Flickr30k results.csv.
IMAGE_COLUMNS = ("image", "filename", "file", "path", "image_path", "file_name", "image_name")
CAPTION_COLUMNS = ("caption", "text", "sentence", "description", "comment")

MAX_MISSING_SHOWN = 5
_FORMATS_HINT = (
    "expected a Karpathy split JSON (dataset_flickr30k.json), a COCO captions JSON "
    "(captions_val2017.json) or a CSV/TSV with image and caption columns"
)


@dataclass
class CaptionSet:
    """Images (relative paths), captions, and the image index of each caption."""

    images: list[str]
    captions: list[str]
    caption_image: list[int]
    name: str

    @property
    def n_images(self) -> int:
        return len(self.images)

    @property
    def n_captions(self) -> int:
        return len(self.captions)

    def paths(self, images_dir: str | Path) -> list[Path]:
        """Absolute image paths in this set's order; every one must exist."""
        images_dir = Path(images_dir)
        if not images_dir.is_dir():
            raise InputError(f"the images folder {images_dir} does not exist")
        paths = [images_dir / rel for rel in self.images]
        missing = [rel for rel, p in zip(self.images, paths, strict=True) if not p.is_file()]
        if missing:
            more = " ..." if len(missing) > MAX_MISSING_SHOWN else ""
            listed = ", ".join(missing[:MAX_MISSING_SHOWN]) + more
            raise InputError(
                f"{len(missing)} of {len(paths)} images named in {self.name} are missing "
                f"from {images_dir}: {listed}"
            )
        return paths


class _Builder:
    """Groups captions under images, keeping first-seen image order."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}
        self.images: list[str] = []
        self.captions: list[str] = []
        self.caption_image: list[int] = []

    def image(self, path: str) -> int:
        i = self.index.get(path)
        if i is None:
            i = self.index[path] = len(self.images)
            self.images.append(path)
        return i

    def caption(self, image_index: int, text: str) -> None:
        text = text.strip()
        if text:  # empty captions carry no query; the image stays in the gallery
            self.captions.append(text)
            self.caption_image.append(image_index)

    def build(self, path: Path, name: str) -> CaptionSet:
        if not self.images:
            raise InputError(f"no images found in captions file {path}; {_FORMATS_HINT}.")
        if not self.captions:
            raise InputError(
                f"no captions found in {path} ({len(self.images)} images, every caption "
                "empty); check the caption column / sentences."
            )
        return CaptionSet(self.images, self.captions, self.caption_image, name)


def load_caption_set(path: str | Path, split: str | None = "test") -> CaptionSet:
    """Read a captions file, detecting its format from the extension and content.

    ``split`` selects Karpathy images by their ``split`` field ("test", "val", "train",
    "restval"); ``None`` keeps every image. COCO captions JSON and CSV/TSV files have no
    split, so ``split`` is ignored for them.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"captions file not found: {path}; check the path.")
    if not path.is_file():
        raise InputError(f"captions path {path} is not a file; pass the captions file itself.")
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a BOM from Excel
    except UnicodeDecodeError as exc:
        raise InputError(
            f"captions file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None
    except OSError as exc:
        raise InputError(f"cannot read captions file {path}: {exc.strerror or exc}.") from None
    if not text.strip():
        raise InputError(f"captions file {path} is empty; {_FORMATS_HINT}.")

    name = path.stem
    if path.suffix.lower() == ".json" or text.lstrip()[:1] in ("{", "["):
        return _load_json(path, text, split, name)
    return _load_table(path, text, name)


# --- JSON ---------------------------------------------------------------------------------


def _load_json(path: Path, text: str, split: str | None, name: str) -> CaptionSet:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"captions file {path} is not valid JSON (line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg})."
        ) from None
    images = data.get("images") if isinstance(data, dict) else None
    if not isinstance(images, list):
        raise InputError(f"unknown captions format in {path}: no 'images' list; {_FORMATS_HINT}.")
    if "annotations" in data:
        return _load_coco(path, data, name)
    if any(isinstance(img, dict) and "sentences" in img for img in images):
        if isinstance(data.get("dataset"), str) and data["dataset"].strip():
            name = data["dataset"].strip()
        return _load_karpathy(path, images, split, name)
    raise InputError(
        f"unknown captions format in {path}: images have no 'sentences' and there are no "
        f"'annotations'; {_FORMATS_HINT}."
    )


def _load_karpathy(path: Path, images: list, split: str | None, name: str) -> CaptionSet:
    builder = _Builder()
    splits: Counter[str] = Counter()
    for n, img in enumerate(images):
        if not isinstance(img, dict) or not isinstance(img.get("filename"), str):
            raise InputError(f"{path}: images[{n}] has no 'filename'; is this a Karpathy file?")
        img_split = img.get("split")
        splits[str(img_split) if img_split is not None else "(none)"] += 1
        if split is not None and img_split != split:
            continue
        filename = img["filename"].strip()
        folder = img.get("filepath")
        if isinstance(folder, str) and folder.strip():
            filename = f"{folder.strip().strip('/')}/{filename}"
        index = builder.image(filename)
        for sentence in img.get("sentences") or []:
            builder.caption(index, _sentence_text(sentence))

    if split is not None and not builder.images:
        available = ", ".join(f"{s} ({c} images)" for s, c in sorted(splits.items()))
        raise InputError(
            f"no images with split {split!r} in {path}; available splits: {available}. "
            "Pick one of those, or use all images."
        )
    return builder.build(path, name if split is None else f"{name}-{split}")


def _sentence_text(sentence: object) -> str:
    # Karpathy sentences carry "raw" text and lower-cased "tokens"; prefer raw.
    if isinstance(sentence, str):
        return sentence
    if isinstance(sentence, dict):
        raw = sentence.get("raw")
        if isinstance(raw, str):
            return raw
        tokens = sentence.get("tokens")
        if isinstance(tokens, list):
            return " ".join(str(t) for t in tokens)
    return ""


def _load_coco(path: Path, data: dict, name: str) -> CaptionSet:
    annotations = data.get("annotations")
    if not isinstance(annotations, list):
        raise InputError(f"{path}: 'annotations' must be a list of {{image_id, caption}}.")
    builder = _Builder()
    by_id: dict[object, int] = {}
    for n, img in enumerate(data["images"]):
        if not (isinstance(img, dict) and "id" in img and isinstance(img.get("file_name"), str)):
            raise InputError(f"{path}: images[{n}] needs 'id' and 'file_name' (COCO format).")
        by_id[img["id"]] = builder.image(img["file_name"].strip())
    for n, ann in enumerate(annotations):
        if not isinstance(ann, dict) or "image_id" not in ann:
            raise InputError(f"{path}: annotations[{n}] needs 'image_id' and 'caption'.")
        index = by_id.get(ann["image_id"])
        if index is None:
            raise InputError(
                f"{path}: annotations[{n}] refers to image_id {ann['image_id']!r}, which is "
                "not in 'images'; the file is inconsistent."
            )
        caption = ann.get("caption")
        builder.caption(index, caption if isinstance(caption, str) else "")
    return builder.build(path, name)


# --- CSV / TSV ----------------------------------------------------------------------------


def _load_table(path: Path, text: str, name: str) -> CaptionSet:
    lines = text.splitlines(keepends=True)
    first = next((ln for ln in lines if ln.strip() and not ln.lstrip().startswith("#")), None)
    if first is None:
        raise InputError(f"captions file {path} has only comments; {_FORMATS_HINT}.")
    delimiter = _delimiter(path, first)

    # Remember which physical line each row ended on, for error messages.
    where = {"line": 0}

    def data_lines() -> Iterator[str]:
        for number, line in enumerate(lines, start=1):
            if line.lstrip().startswith("#"):
                continue
            where["line"] = number
            yield line

    rows = csv.reader(data_lines(), delimiter=delimiter)
    try:
        header = next((row for row in rows if any(cell.strip() for cell in row)), None)
    except csv.Error as exc:
        raise InputError(f"{path}: cannot parse line {where['line']}: {exc}.") from None
    if header is None:
        raise InputError(f"captions file {path} has no rows with content; {_FORMATS_HINT}.")
    image_col, caption_col = _header_columns(path, header)
    builder = _Builder()
    if image_col is None:  # no header: every row is exactly image, caption
        image_col, caption_col, width = 0, 1, 2
        _add_row(path, builder, header, image_col, caption_col, where["line"], exact=width)
    else:
        width = None

    try:
        for row in rows:
            if not any(cell.strip() for cell in row):
                continue  # blank line
            _add_row(path, builder, row, image_col, caption_col, where["line"], exact=width)
    except csv.Error as exc:
        raise InputError(f"{path}: cannot parse line {where['line']}: {exc}.") from None
    return builder.build(path, name)


def _delimiter(path: Path, first_line: str) -> str:
    suffix = path.suffix.lower()
    if suffix == ".tsv":
        return "\t"
    if suffix == ".csv" and "," in first_line:
        return ","
    # Unknown extension (or a .csv without commas, like Flickr30k's '|' results.csv).
    for candidate in ("\t", "|", ","):
        if candidate in first_line:
            return candidate
    return ","


def _header_columns(path: Path, header: list[str]) -> tuple[int | None, int | None]:
    names = [cell.strip().lower() for cell in header]
    image_col = next((i for i, n in enumerate(names) if n in IMAGE_COLUMNS), None)
    caption_col = next((i for i, n in enumerate(names) if n in CAPTION_COLUMNS), None)
    if image_col is not None and caption_col is not None:
        return image_col, caption_col
    found = ", ".join(repr(c.strip()) for c in header)
    if image_col is not None:
        raise InputError(
            f"{path} has an image column but no caption column (looked for "
            f"{'/'.join(CAPTION_COLUMNS)}); found columns: {found}."
        )
    if caption_col is not None:
        raise InputError(
            f"{path} has a caption column but no image column (looked for "
            f"{'/'.join(IMAGE_COLUMNS)}); found columns: {found}."
        )
    if len(header) != 2:
        raise InputError(
            f"{path}: first row has no image/caption header (looked for "
            f"{'/'.join(IMAGE_COLUMNS)} and {'/'.join(CAPTION_COLUMNS)}) and has "
            f"{len(header)} columns, not the 2 (image, caption) a headerless file needs."
        )
    return None, None


def _add_row(
    path: Path,
    builder: _Builder,
    row: list[str],
    image_col: int,
    caption_col: int,
    line: int,
    exact: int | None,
) -> None:
    if exact is not None and len(row) != exact:
        raise InputError(
            f"{path} line {line}: expected 2 columns (image, caption), got {len(row)}; "
            "quote captions that contain the delimiter."
        )
    if len(row) <= max(image_col, caption_col):
        raise InputError(
            f"{path} line {line}: expected at least {max(image_col, caption_col) + 1} "
            f"columns, got {len(row)}."
        )
    image = row[image_col].strip()
    if not image:
        raise InputError(f"{path} line {line}: the image column is empty.")
    builder.caption(builder.image(image), row[caption_col])
