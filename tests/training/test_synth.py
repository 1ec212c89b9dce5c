"""The synthetic captioned set: deterministic, split by image, and every caption true of the
pixels it is paired with."""

from __future__ import annotations

import json
import random
import re
import sys
from pathlib import Path

import pytest
from PIL import Image

from pixseek.cli import main
from search.errors import InputError
from search.evaluation.captions import load_caption_set
from training.synth import (
    BACKGROUNDS,
    COLOURS,
    KINDS,
    SIZE,
    SIZE_WORDS,
    describe,
    draw_scene,
    random_scene,
    render_synth,
)

PLURALS = {plural: kind for kind, plural in KINDS.items()}
SIZE_OF_WORD = {word: size for size, words in SIZE_WORDS.items() for word in words}
NAMED = {**COLOURS, **BACKGROUNDS}


def nearest_colour(rgb: tuple[int, ...]) -> str:
    return min(NAMED, key=lambda n: sum((a - b) ** 2 for a, b in zip(NAMED[n], rgb, strict=True)))


def words(caption: str) -> set[str]:
    return set(re.findall(r"[a-z]+", caption))


def assert_caption_true(caption: str, scene) -> None:
    """The caption names exactly the scene's background, colours, kinds and sizes."""
    w = words(caption)
    shapes = scene.shapes
    assert w & BACKGROUNDS.keys() == {scene.background}, caption
    assert w & COLOURS.keys() == {s.colour for s in shapes}, caption
    kinds = {k for k in KINDS if k in w} | {PLURALS[p] for p in PLURALS if p in w}
    assert kinds == {s.kind for s in shapes}, caption
    assert {SIZE_OF_WORD[x] for x in w & SIZE_OF_WORD.keys()} == {s.size for s in shapes}, caption
    # A count is said for identical shapes, and only for them.
    for kind, colour, size in {(s.kind, s.colour, s.size) for s in shapes}:
        n = sum((s.kind, s.colour, s.size) == (kind, colour, size) for s in shapes)
        if n > 1:
            number = {2: "two", 3: "three"}[n]
            assert re.search(rf"\b{number} (\w+ )?{colour} {KINDS[kind]}\b", caption), caption
    for plural, kind in PLURALS.items():
        if plural in w:
            assert sum(s.kind == kind for s in shapes) > 1, caption


def test_captions_are_true_of_the_scene():
    counted = 0
    for i in range(300):
        rng = random.Random(i)
        scene = random_scene(rng)
        captions = describe(scene, rng)
        assert 3 <= len(captions) <= 5 and len(set(captions)) == len(captions)
        for caption in captions:
            assert_caption_true(caption, scene)
        # Positions are in the words of at least one caption of each image.
        for s in scene.shapes:
            assert any(s.position in c for c in captions), (s, captions)
        counted += len({(s.kind, s.colour, s.size) for s in scene.shapes}) < len(scene.shapes)
    assert counted > 10  # the count wording ("two red stars") was exercised


def test_drawn_pixels_match_the_scene():
    for i in range(300):
        scene = random_scene(random.Random(i))
        image = draw_scene(scene)
        assert image.size == (SIZE, SIZE) and image.mode == "RGB"
        for s in scene.shapes:
            assert nearest_colour(image.getpixel((s.x, s.y))) == s.colour, s
        # Shapes stay inside their grid cells, so the corners always show the background.
        for corner in ((0, 0), (SIZE - 1, 0), (0, SIZE - 1), (SIZE - 1, SIZE - 1)):
            assert nearest_colour(image.getpixel(corner)) == scene.background


@pytest.fixture(scope="module")
def synth_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "set"
    render_synth(out, 12, seed=3, test_fraction=0.25)
    return out


def test_files_on_disk_agree_with_their_captions(synth_set):
    data = json.loads((synth_set / "captions.json").read_text())
    assert data["dataset"] == "synth" and len(data["images"]) == 12
    for entry in data["images"]:
        image = Image.open(synth_set / "images" / entry["filename"])
        assert image.format == "PNG" and image.size == (SIZE, SIZE)
        image = image.convert("RGB")
        # The colours the captions name are the colours at the shapes' centres.
        seen = {nearest_colour(image.getpixel((s["x"], s["y"]))) for s in entry["scene"]["shapes"]}
        for sentence in entry["sentences"]:
            assert words(sentence["raw"]) & COLOURS.keys() == seen, sentence
            assert entry["scene"]["background"] in words(sentence["raw"])
        assert nearest_colour(image.getpixel((0, 0))) == entry["scene"]["background"]


def test_split_is_by_image_and_loads_for_the_bench(synth_set):
    captions_file = synth_set / "captions.json"
    train = load_caption_set(captions_file, split="train")
    test = load_caption_set(captions_file, split="test")
    everything = load_caption_set(captions_file, split=None)
    assert test.n_images == 3 and train.n_images == 9
    assert set(train.images).isdisjoint(test.images)
    assert set(train.images) | set(test.images) == set(everything.images)
    assert train.n_captions + test.n_captions == everything.n_captions
    assert test.name == "synth-test"
    # The bench joins --images with these names: DIR/images is the folder to give it.
    assert all((synth_set / "images" / rel).is_file() for rel in everything.images)


def test_smallest_set_has_one_image_each_side(tmp_path):
    for fraction in (0.01, 0.99):
        out = tmp_path / str(fraction)
        render_synth(out, 2, test_fraction=fraction)
        splits = [e["split"] for e in json.loads((out / "captions.json").read_text())["images"]]
        assert sorted(splits) == ["test", "train"]


def test_same_seed_same_bytes(tmp_path, synth_set):
    again = render_synth(tmp_path / "again", 12, seed=3, test_fraction=0.25).parent
    files = sorted(p.relative_to(synth_set) for p in synth_set.rglob("*") if p.is_file())
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    for rel in files:
        assert (synth_set / rel).read_bytes() == (again / rel).read_bytes(), rel
    other = render_synth(tmp_path / "other", 12, seed=4, test_fraction=0.25).parent
    assert (other / "captions.json").read_bytes() != (again / "captions.json").read_bytes()


def test_refuses_a_folder_that_is_not_a_synth_set(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(InputError, match="not a synthetic set"):
        render_synth(tmp_path, 4)
    assert (tmp_path / "notes.txt").read_text() == "mine"
    assert not (tmp_path / "images").exists()

    photos = tmp_path / "photos"
    (photos / "images").mkdir(parents=True)
    (photos / "images" / "holiday.jpg").write_bytes(b"not ours")
    with pytest.raises(InputError, match="not a synthetic set"):
        render_synth(photos, 4)
    assert (photos / "images" / "holiday.jpg").read_bytes() == b"not ours"

    other_captions = tmp_path / "karpathy"
    other_captions.mkdir()
    (other_captions / "captions.json").write_text('{"dataset": "flickr30k", "images": []}')
    with pytest.raises(InputError, match="not a synthetic set"):
        render_synth(other_captions, 4)


def test_rerun_over_a_synth_set_replaces_it(tmp_path):
    render_synth(tmp_path / "set", 8)
    render_synth(tmp_path / "set", 8)  # same arguments: allowed
    render_synth(tmp_path / "set", 3)  # a smaller set leaves no stale images behind
    assert len(list((tmp_path / "set" / "images").iterdir())) == 3
    assert load_caption_set(tmp_path / "set" / "captions.json", split=None).n_images == 3


@pytest.mark.parametrize(
    ("pairs", "kwargs", "message"),
    [(1, {}, "pairs must be"), (0, {}, "pairs must be"), (True, {}, "pairs must be"),
     (2.5, {}, "pairs must be"), ("10", {}, "pairs must be"),
     (10, {"test_fraction": 0}, "test fraction"), (10, {"test_fraction": 1.0}, "test fraction"),
     (10, {"seed": "x"}, "seed must be")],
)
def test_bad_arguments_are_input_errors(tmp_path, pairs, kwargs, message):
    with pytest.raises(InputError, match=message):
        render_synth(tmp_path / "set", pairs, **kwargs)
    assert not (tmp_path / "set").exists()


def run_cli(monkeypatch, tmp_path, *args: str) -> int:
    monkeypatch.setattr(sys, "argv", ["pixseek", "--data-dir", str(tmp_path / "data"),
                                      "--model", "offline", *args])
    monkeypatch.delenv("PIXSEEK_CONFIG", raising=False)
    monkeypatch.chdir(tmp_path)  # no ./config.yaml
    try:
        main()
    except SystemExit as exited:
        return exited.code
    return 0


def test_cli_writes_a_set_and_says_what_to_run_next(tmp_path, monkeypatch, capsys):
    out = tmp_path / "set"
    assert run_cli(monkeypatch, tmp_path, "bench", "synth", str(out), "--pairs", "5") == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 1
    assert (f"pixseek bench retrieval --captions {out / 'captions.json'} "
            f"--images {out / 'images'} --split test") in lines[0]
    assert load_caption_set(out / "captions.json", split="test").n_images == 1


@pytest.mark.parametrize("pairs", ["1", "-5", "many"])
def test_cli_bad_pairs_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, pairs):
    code = run_cli(monkeypatch, tmp_path, "bench", "synth", str(tmp_path / "set"),
                   "--pairs", pairs)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 2, err
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "pairs" in lines[0], err
    assert "Traceback" not in err and not (tmp_path / "set").exists()
