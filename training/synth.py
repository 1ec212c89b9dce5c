"""A synthetic captioned image set: coloured shapes on plain backgrounds, described in words.

It lets a person pre-train or fine-tune a tiny CLIP offline and watch Recall@1 rise: every
caption names the background and the colour, kind and size of every shape, so matching a
caption to its image is learnable by a small ViT in minutes, yet positions, counts and
several shapes per image keep it from being trivial.

Images are 224x224 PNG: flat colours without anti-aliasing compress to about 1 KB each (a
quality-95 JPEG is 3-4 KB and smears the edges) and keep every pixel exact. ``captions.json``
is a Karpathy split file (``search.evaluation.captions`` reads it) whose file names are
relative to ``images/``, so ``pixseek bench retrieval --captions DIR/captions.json --images
DIR/images`` works on it.
"""

from __future__ import annotations

import json
import math
import random
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from PIL import Image, ImageDraw

from search.errors import InputError
from search.files import atomic_write

__all__ = ["Shape", "Scene", "random_scene", "draw_scene", "describe", "render_synth",
           "SIZE", "COLOURS", "BACKGROUNDS", "KINDS"]

SIZE = 224  # what the CLIP preprocessor crops to: the image arrives unchanged
DATASET = "synth"
GENERATOR = "pixseek bench synth"  # marks a folder this module may overwrite
CAPTIONS_NAME = "captions.json"
IMAGES_NAME = "images"
IMAGE_NAME = re.compile(r"synth_\d+\.png")

# Named colours far apart in RGB, so each name is one clearly different colour.
COLOURS = {
    "red": (220, 30, 30),
    "orange": (255, 140, 0),
    "yellow": (250, 220, 0),
    "green": (30, 160, 50),
    "blue": (30, 70, 220),
    "purple": (130, 40, 170),
    "pink": (255, 120, 190),
    "brown": (120, 70, 20),
}
# Backgrounds share no name with the shapes: a shape never vanishes into its background.
BACKGROUNDS = {
    "white": (255, 255, 255),
    "black": (0, 0, 0),
    "gray": (128, 128, 128),
    "beige": (225, 205, 160),
}
KINDS = {"circle": "circles", "square": "squares", "triangle": "triangles", "star": "stars",
         "cross": "crosses"}
SIDE = {"small": 34, "large": 66}  # bounding-box side in pixels; a grid cell is ~75
SIZE_WORDS = {"small": ("small", "tiny", "little"), "large": ("large", "big")}

# A 3x3 grid, row by row, named as a person would say it.
POSITIONS = ("top left", "top", "top right", "left", "centre", "right",
             "bottom left", "bottom", "bottom right")
CELL = SIZE / 3
NUMBERS = {1: "one", 2: "two", 3: "three"}
REPEAT_CHANCE = 0.25  # how often a shape is copied, so that counts ("two red stars") occur
COLOUR_JITTER = 12  # +- per channel: names stay unambiguous, pixels are not all identical


@dataclass(frozen=True)
class Shape:
    """One drawn shape: what the captions say about it, and where it is in pixels."""

    kind: str
    colour: str
    size: str
    position: str
    x: int  # centre, in pixels; every kind is filled at its centre
    y: int
    rgb: tuple[int, int, int]


@dataclass(frozen=True)
class Scene:
    background: str
    background_rgb: tuple[int, int, int]
    shapes: tuple[Shape, ...]


def _jitter(rgb: tuple[int, int, int], rng: random.Random, amount: int) -> tuple[int, int, int]:
    return tuple(min(255, max(0, c + rng.randint(-amount, amount))) for c in rgb)


def random_scene(rng: random.Random) -> Scene:
    """1-3 shapes, each in its own grid cell (they never overlap), on a plain background."""
    background = rng.choice(list(BACKGROUNDS))
    count = rng.choices((1, 2, 3), weights=(4, 3, 3))[0]
    shapes: list[Shape] = []
    for cell in rng.sample(range(len(POSITIONS)), count):
        if shapes and rng.random() < REPEAT_CHANCE:
            kind, colour, size = shapes[-1].kind, shapes[-1].colour, shapes[-1].size
        else:
            kind, colour = rng.choice(list(KINDS)), rng.choice(list(COLOURS))
            size = rng.choice(list(SIDE))
        # Move the shape within its cell, keeping it inside: position is not a fixed pixel.
        slack = int((CELL - SIDE[size]) / 2) - 2
        row, col = divmod(cell, 3)
        x = round(CELL * (col + 0.5)) + rng.randint(-slack, slack)
        y = round(CELL * (row + 0.5)) + rng.randint(-slack, slack)
        rgb = _jitter(COLOURS[colour], rng, COLOUR_JITTER)
        shapes.append(Shape(kind, colour, size, POSITIONS[cell], x, y, rgb))
    return Scene(background, _jitter(BACKGROUNDS[background], rng, COLOUR_JITTER // 2),
                 tuple(shapes))


def _star(x: int, y: int, radius: float) -> list[tuple[float, float]]:
    points = []
    for i in range(10):  # outer and inner corners in turn, the first pointing up
        r = radius if i % 2 == 0 else radius * 0.45
        angle = -math.pi / 2 + i * math.pi / 5
        points.append((x + r * math.cos(angle), y + r * math.sin(angle)))
    return points


def draw_scene(scene: Scene) -> Image.Image:
    """The scene as a SIZE x SIZE RGB image."""
    image = Image.new("RGB", (SIZE, SIZE), scene.background_rgb)
    draw = ImageDraw.Draw(image)
    for s in scene.shapes:
        h = SIDE[s.size] / 2
        box = (s.x - h, s.y - h, s.x + h, s.y + h)
        if s.kind == "circle":
            draw.ellipse(box, fill=s.rgb)
        elif s.kind == "square":
            draw.rectangle(box, fill=s.rgb)
        elif s.kind == "triangle":  # pointing up; at its centre row it is half as wide
            draw.polygon([(s.x, s.y - h), (s.x + h, s.y + h), (s.x - h, s.y + h)], fill=s.rgb)
        elif s.kind == "star":
            draw.polygon(_star(s.x, s.y, h), fill=s.rgb)
        elif s.kind == "cross":  # a plus sign, arms a third of the side thick
            t = h / 3
            draw.rectangle((s.x - h, s.y - t, s.x + h, s.y + t), fill=s.rgb)
            draw.rectangle((s.x - t, s.y - h, s.x + t, s.y + h), fill=s.rgb)
        else:  # pragma: no cover - KINDS and this function change together
            raise ValueError(f"unknown shape kind {s.kind!r}")
    return image


# --- captions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Group:
    """Identical shapes (same kind, colour and size), described together: "two red stars"."""

    kind: str
    colour: str
    size: str
    positions: tuple[str, ...]

    @property
    def count(self) -> int:
        return len(self.positions)


def _groups(scene: Scene) -> list[_Group]:
    found: dict[tuple[str, str, str], list[str]] = {}
    for s in scene.shapes:
        found.setdefault((s.kind, s.colour, s.size), []).append(s.position)
    return [_Group(k, c, z, tuple(p)) for (k, c, z), p in found.items()]


def _a(word: str) -> str:
    return f"an {word}" if word[0] in "aeiou" else f"a {word}"


def _noun(g: _Group, size: str | None = None, one: str = "a") -> str:
    """Phrases like "a large red circle", "one big red circle", "two red circles"."""
    words = " ".join(w for w in (size, g.colour) if w)
    if g.count > 1:
        return f"{NUMBERS[g.count]} {words} {KINDS[g.kind]}"
    return f"one {words} {g.kind}" if one == "one" else _a(f"{words} {g.kind}")


def _where(position: str) -> str:
    if position == "centre":
        return "in the centre"
    if position in ("left", "right"):
        return f"on the {position}"
    return f"at the {position}"


def _where_all(g: _Group) -> str:
    return " and ".join(_where(p) for p in g.positions)


def _join(parts: list[str]) -> str:
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _reading_order(g: _Group) -> int:
    return min(POSITIONS.index(p) for p in g.positions)


def describe(scene: Scene, rng: random.Random) -> list[str]:
    """3-5 different true captions of the scene; each names the background and the colour,
    kind and size of every shape, in different words and orders."""
    groups = _groups(scene)
    bg = scene.background
    n_shapes = len(scene.shapes)
    shuffled = rng.sample(groups, len(groups))

    def size_word(g: _Group) -> str:
        return rng.choice(SIZE_WORDS[g.size])

    templates = [
        lambda: f"{_join([_noun(g, g.size) for g in groups])} on a {bg} background",
        lambda: f"{bg} background with " + _join(
            [f"{_noun(g, size_word(g), one='one')} {_where_all(g)}"
             for g in sorted(groups, key=_reading_order)]),
        lambda: "a photo of " + ", and ".join(
            f"{_noun(g)}, {g.size}, {_where_all(g)}"
            for g in sorted(groups, key=lambda g: g.size != "large")) + f", over {bg}",
        lambda: f"{NUMBERS[n_shapes]} shape{'s' if n_shapes > 1 else ''} on {bg}: " + _join(
            [f"{_noun(g, size_word(g))} ({' and '.join(g.positions)})"
             for g in reversed(groups)]),
        lambda: f"a simple drawing of {_join([_noun(g, g.size) for g in shuffled])}, "
                f"{bg} backdrop",
    ]
    chosen = rng.sample(templates, rng.randint(3, len(templates)))
    return [make() for make in chosen]


# --- the set on disk ------------------------------------------------------------------------


def _check_args(pairs: object, seed: object, test_fraction: object) -> None:
    if isinstance(pairs, bool) or not isinstance(pairs, int) or pairs < 2:
        raise InputError(
            f"pairs must be a whole number of at least 2 (got {pairs!r}): the set needs at "
            "least one training and one test image."
        )
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputError(f"seed must be a whole number (got {seed!r}).")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, int | float) or not (
        0 < test_fraction < 1
    ):
        raise InputError(
            f"test fraction must be between 0 and 1, e.g. 0.2 (got {test_fraction!r})."
        )


def _check_out_dir(out_dir: Path) -> None:
    """Refuse a folder that holds anything but a previous synthetic set: a person's files
    must never be overwritten or deleted."""
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{out_dir} is a file; give a folder for the synthetic set.")
    if not out_dir.exists():
        return
    refuse = InputError(
        f"{out_dir} is not empty and is not a synthetic set made by '{GENERATOR}'; "
        "give a new or empty folder."
    )
    for entry in out_dir.iterdir():
        if entry.name == IMAGES_NAME and entry.is_dir():
            if any(not (IMAGE_NAME.fullmatch(f.name) and f.is_file()) for f in entry.iterdir()):
                raise refuse
        elif entry.name == CAPTIONS_NAME and entry.is_file():
            try:
                data = json.loads(entry.read_text(encoding="utf-8"))
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                raise refuse from None
            made_by = data.get("generator") if isinstance(data, dict) else None
            if not (isinstance(made_by, dict) and made_by.get("name") == GENERATOR):
                raise refuse
        elif not (entry.name.startswith(f".{CAPTIONS_NAME}.") and entry.name.endswith(".tmp")):
            raise refuse  # anything else; a leftover temporary captions file is ours


def _test_images(pairs: int, seed: int, test_fraction: float) -> set[int]:
    n_test = min(pairs - 1, max(1, round(pairs * test_fraction)))
    return set(random.Random(f"synth-split-{seed}").sample(range(pairs), n_test))


def render_synth(out_dir: Path, pairs: int, seed: int = 0, test_fraction: float = 0.2) -> Path:
    """Render ``pairs`` captioned images into ``out_dir/images/`` and write
    ``out_dir/captions.json`` (Karpathy split format, each image also carrying its
    ``scene``); returns the captions file. The same arguments give the same bytes. An
    existing folder must be empty or a previous synthetic set, which is replaced."""
    _check_args(pairs, seed, test_fraction)
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    images_dir = out_dir / IMAGES_NAME
    captions_path = out_dir / CAPTIONS_NAME
    test = _test_images(pairs, seed, test_fraction)
    width = max(5, len(str(pairs - 1)))
    entries = []
    try:
        images_dir.mkdir(parents=True, exist_ok=True)
        # Gone before any image changes: a half-rewritten set never has a captions file.
        captions_path.unlink(missing_ok=True)
        for i in range(pairs):
            # One generator per image: image i is the same whatever ``pairs`` is.
            rng = random.Random(f"synth-{seed}-{i}")
            scene = random_scene(rng)
            filename = f"synth_{i:0{width}d}.png"
            draw_scene(scene).save(images_dir / filename)
            entries.append({
                "filename": filename,
                "imgid": i,
                "split": "test" if i in test else "train",
                "sentences": [{"raw": c} for c in describe(scene, rng)],
                "scene": asdict(scene),
            })
        # A smaller set over a larger one: its extra images would be stale, so remove them.
        keep = {e["filename"] for e in entries}
        for f in images_dir.iterdir():
            if IMAGE_NAME.fullmatch(f.name) and f.name not in keep:
                f.unlink()
        generator = {"name": GENERATOR, "pairs": pairs, "seed": seed,
                     "test_fraction": test_fraction}
        with atomic_write(captions_path, "w") as fh:
            # One image per line: a person can read it and a diff shows which images changed.
            fh.write(f'{{"dataset": "{DATASET}", "generator": {json.dumps(generator)},\n')
            fh.write(' "images": [\n')
            fh.write(",\n".join(json.dumps(e) for e in entries))
            fh.write("\n]}\n")
    except OSError as exc:
        raise InputError(f"cannot write the synthetic set to {out_dir}: "
                         f"{exc.strerror or exc}.") from None
    return captions_path
