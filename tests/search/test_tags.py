"""Tags taught by example (search.tags): the classifier on real offline-model vectors, and a
tag's life in a real library (store, indexer, search, CLI)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from benchmarks.tags import KINDS, PROMPTS, evaluate, shape_photos
from search import tags
from search.errors import InputError


def test_taught_tags_beat_text_only_on_shapes(offline):
    """5 positive + 5 negative examples: macro F1 >= 0.8 on the rest of a labelled set,
    and at least 0.2 above tags given only a text prompt."""
    images, labels = shape_photos(14, seed=7)
    vectors = offline.encode_images(images)
    prompts = dict(zip(KINDS, offline.encode_texts([PROMPTS[k] for k in KINDS]), strict=True))
    result = evaluate(vectors, labels, prompts, shots=5, seed=7)
    assert result["taught_macro_f1"] >= 0.8, result
    assert result["taught_macro_f1"] >= result["text_only_macro_f1"] + 0.2, result


def test_threshold_separates_held_out_examples_and_apply_matches_scores():
    rng = np.random.default_rng(0)
    centre_a, centre_b = rng.standard_normal(64), rng.standard_normal(64)
    a = centre_a + 0.6 * rng.standard_normal((60, 64))
    b = centre_b + 0.6 * rng.standard_normal((300, 64))
    library = np.concatenate([a, b])
    classifier = tags.fit(a[:5], b[:5], None, library)
    scores = classifier.scores(library)
    assert (scores[5:60] >= 0.5).mean() > 0.9 and (scores[65:] < 0.5).mean() > 0.9
    [(ids, applied)] = list(tags.apply([classifier], [(np.arange(360), library)]))
    assert np.allclose(applied[:, 0], scores, atol=1e-3) and list(ids) == list(range(360))


def test_fit_needs_a_positive_or_a_prompt():
    with pytest.raises(InputError, match="positive example or a text prompt"):
        tags.fit(None, np.ones((2, 4)), None, np.ones((3, 4)))


def test_bad_tag_names_are_refused():
    for bad in ("", "   ", "a/b", "x" * 200, "two\nlines"):
        with pytest.raises(InputError):
            tags.check_name(bad)


# -- a tag in a library ----------------------------------------------------------------------

SPACE = ["lunar_surface", "deep_field_galaxies", "launch_pad_rocket"]
NOT_SPACE = ["chelsea_cat", "espresso_cup"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory, samples, offline):
    """The sample photos indexed with the offline model; ``space`` taught by example."""
    from indexer.pipeline import Indexer
    from search.config import load_config
    from search.store import Store
    from tests.library import copy_library

    root = tmp_path_factory.mktemp("tags")
    photos = copy_library(root / "photos", samples)
    (root / "c.yaml").write_text("{}\n")
    config = load_config(root / "c.yaml", environ={}, overrides={
        "data_dir": str(root / "data"), "indexer.decode_workers": 0, "model.name": "offline"})
    store = Store(config.db_url)
    Indexer(config, store, offline, progress=False).index([photos])
    path = {p.stem: str(p) for p in photos.iterdir()}
    info = tags.teach(store, offline.model_id, offline.encode_texts, "space",
                      [path[n] for n in SPACE], [path[n] for n in NOT_SPACE])
    yield config, store, photos, path, info
    store.close()


def test_teaching_applies_the_tag_to_the_library(lib, offline):
    config, store, photos, path, info = lib
    members = {Path(m["path"]).stem for m in tags.members(store, "space")}
    assert set(SPACE) <= members and not members & set(NOT_SPACE)
    assert info["version"] == 1 and len(info["positives"]) == 3 and len(info["negatives"]) == 2
    suggested = tags.suggestions(store, offline.model_id, "space", 3)
    ids = {c for c, _ in store.tag_examples(store.tag("space").id).items()}
    assert len(suggested) == 3 and not ids & {s["id"] for s in suggested}


def test_a_photo_indexed_later_carries_its_tag(lib, offline, tmp_path):
    from indexer.pipeline import Indexer

    config, store, photos, path, _ = lib
    later = photos / "moon_again.jpg"  # other bytes (a new content), the same picture
    Image.open(path["lunar_surface"]).convert("RGB").save(later, quality=90)
    Indexer(config, store, offline, progress=False).index([photos])
    cid = store.content_for_path(str(later))
    tag = store.tag("space")
    assert cid in dict(store.tag_members(tag.id))
    from search.store import TagMember

    with store.session() as s:
        assert s.get(TagMember, (tag.id, cid)).version == tag.version


def test_search_with_tag_returns_only_tagged_photos(lib, offline):
    from search.engine import Engine
    from search.query import build

    config, store, *_ = lib
    members = {c for c, _ in store.tag_members(store.tag("space").id)}
    with Engine(config, encoder=offline) as engine:
        inside = engine.search(build("a photo", tags=["space"], k=20, collapse=False))
        outside = engine.search(build("a photo", not_tags=["space"], k=20, collapse=False))
        assert {r.content_id for r in inside.results} == members
        assert not {r.content_id for r in outside.results} & members
        assert outside.results
        alone = engine.search(build(None, tags=["space"], k=50, collapse=False))  # surest first
        assert {r.content_id for r in alone.results} == members
        assert [r.score for r in alone.results] == sorted((r.score for r in alone.results),
                                                          reverse=True)
        with pytest.raises(InputError, match="no tag named 'nope'"):
            engine.search(build("a photo", tags=["nope"]))
    with pytest.raises(InputError, match="asked for and excluded"):
        build("a photo", tags=["space"], not_tags=["space"])


def test_cli_commands(lib, monkeypatch):
    from pixseek.cli import cli

    config, store, photos, path, _ = lib
    monkeypatch.delenv("PIXSEEK_CONFIG", raising=False)
    base = ["--data-dir", str(config.data_path), "--model", "offline"]
    runner = CliRunner()

    def run(*args: str) -> str:
        result = runner.invoke(cli, [*base, *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.output

    out = run("tag", "cats", "--add", path["chelsea_cat"], "--text", "a cat")
    assert "tag 'cats' (version 1)" in out
    listed = json.loads(run("tag", "cats", "--list", "--json"))
    assert listed and all(set(r) == {"id", "path", "score"} for r in listed)
    assert path["chelsea_cat"] in [r["path"] for r in listed]
    assert path["chelsea_cat"] in run("tag", "cats", "--export").splitlines()
    assert len(json.loads(run("tag", "cats", "--suggest", "-k", "2", "--json"))) == 2
    from search.xmp import subjects

    assert path["chelsea_cat"] in run("tag", "cats", "--export", "--xmp").splitlines()
    assert subjects(path["chelsea_cat"]) == ["cats"]
    assert "version 2" in run("tag", "cats", "--not", path["espresso_cup"])
    every = {t["name"]: t["count"] for t in json.loads(run("tags", "--json"))}
    assert every["cats"] >= 1
    assert "space" in every
    found = json.loads(run("search", "--tag", "cats", "--tag", "space", "--no-collapse",
                           "--json"))
    both = ({c for c, _ in store.tag_members(store.tag("cats").id)}
            & {c for c, _ in store.tag_members(store.tag("space").id)})
    assert {r["id"] for r in found} == both
    assert "deleted tag 'cats'" in run("tag", "cats", "--delete")
    assert "cats" not in {t["name"] for t in json.loads(run("tags", "--json"))}


def test_a_prompt_only_tag_is_scored_at_the_calibrated_scale(lib, offline):
    """A tag with prompts only: softmax at the calibrated logit scale against generic
    captions; a lower temperature (higher scale) takes in more photos, a higher one fewer."""
    from search.calibration import logit_scale

    config, store, photos, path, _ = lib
    scale = logit_scale(offline)
    tags.teach(store, offline.model_id, offline.encode_texts, "kitty", texts=["a cat"],
               logit_scale=lambda: scale)
    stored = tags.classifier_of(store.tag("kitty"))
    prompt = offline.encode_texts(["a cat"])[0]
    contrast = offline.encode_texts(list(tags.CONTRAST_PROMPTS)).mean(0)
    assert np.allclose(stored.weights, scale * (prompt - contrast), atol=1e-4)
    assert stored.threshold == 0.0
    vectors = np.concatenate([v for _, _, v in store.iter_embeddings(offline.model_id)])
    at = {s: tags.train(store, offline.encode_texts, offline.model_id, "kitty", s)
          .scores(vectors) >= 0.5 for s in (scale / 10, scale, scale * 10)}
    hot, calibrated, cold = at[scale / 10], at[scale], at[scale * 10]
    assert (hot <= calibrated).all() and (calibrated <= cold).all() and hot.sum() < cold.sum()
    members = {Path(m["path"]).stem for m in tags.members(store, "kitty")}
    assert "chelsea_cat" in members and len(members) < len(vectors) / 2
    # Without a scale (no encoder to calibrate), the library's scores are cut instead.
    assert tags.train(store, offline.encode_texts, offline.model_id, "kitty").threshold != 0
    assert store.delete_tag("kitty")


def test_cli_temperature_overrides_the_calibrated_one(lib, monkeypatch, cli_error):
    from pixseek.cli import cli

    config, *_ = lib
    monkeypatch.delenv("PIXSEEK_CONFIG", raising=False)
    base = ["--data-dir", str(config.data_path), "--model", "offline"]

    def count(name: str, *args: str) -> int:
        result = CliRunner().invoke(cli, [*base, "tag", name, "--text", "a cat", *args,
                                          "--json"], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return json.loads(result.output)["count"]

    hot, calibrated, cold = (count("hot", "--temperature", "1"), count("calibrated"),
                             count("cold", "--temperature", "0.01"))
    assert hot <= calibrated <= cold and hot < cold
    assert "above 0" in cli_error([*base, "tag", "x", "--text", "a", "--temperature", "0"])
    assert "above 0" in cli_error([*base, "tag", "x", "--text", "a", "--temperature", "hot"])
    assert "goes with --text" in cli_error([*base, "tag", "x", "--list", "--temperature", "1"])
    for name in ("hot", "calibrated", "cold"):
        assert lib[1].delete_tag(name)


def test_cli_errors(lib, cli_error):
    config, store, photos, path, _ = lib
    base = ["--data-dir", str(config.data_path), "--model", "offline"]
    assert "no tag named 'nope'" in cli_error([*base, "tag", "nope", "--list"])
    assert "not an indexed photo" in cli_error([*base, "tag", "x", "--add", "/no/such.jpg"])
    assert "no photo with id 99999" in cli_error([*base, "tag", "x", "--add", "99999"])
    assert "needs a name" in cli_error([*base, "tag", "", "--list"])
    assert "say what to do" in cli_error([*base, "tag", "space"])
    assert "no tag named 'nope'" in cli_error([*base, "search", "a", "--tag", "nope"])
    assert "not only --not" in cli_error([*base, "tag", "fresh", "--not", path["chelsea_cat"]])
    assert store.tag("x") is None and store.tag("fresh") is None  # nothing half-written


def test_tag_tables_on_postgresql(pg_url):
    from search.store import File, Filter, Store

    with Store(pg_url) as store:
        tag = store.teach_tag("receipts", prompts=["a receipt"])
        assert store.teach_tag("receipts", prompts=["a receipt", "a bill"]).version == 2
        assert store.tag("receipts").prompt_list == ["a receipt", "a bill"]
        assert store.fit_tag(tag.id, 2, "m", np.ones(4, np.float32), 0.5, 0.1)
        assert not store.fit_tag(tag.id, 1, "m", np.ones(4, np.float32), 0.5, 0.1)
        assert store.save_tag_members(tag.id, 2, [], 7, replace=True)
        assert [(t.name, n) for t, n in store.all_tags()] == [("receipts", 0)]
        with store.session() as s:
            ids = store.insert_contents(s, [{"hash": f"h{i}", "size": 1, "width": 1,
                                             "height": 1} for i in range(3)])
            store.insert_embeddings(s, "m", ids, np.eye(3, 4, dtype=np.float32))
            s.add_all([File(path=f"/p/{i}.jpg", size=1, mtime_ns=0, content_id=cid,
                            status="ok") for i, cid in enumerate(ids)])
        assert store.save_tag_members(tag.id, 2, [(ids[0], 0.9), (ids[2], 0.7)], 9, True)
        assert store.filtered_contents("m", Filter(tags=("receipts",))).tolist() == [
            ids[0], ids[2]]
        assert store.filtered_contents("m", Filter(not_tags=("receipts",))).tolist() == [ids[1]]
        assert store.delete_tag("receipts") and store.tag("receipts") is None
        assert store.filtered_contents("m", Filter(tags=("receipts",))).tolist() == []


def test_xmp_sidecars_gain_the_keyword_and_keep_the_rest(tmp_path):
    from search import xmp

    photo = tmp_path / "a.jpg"
    photo.write_bytes(b"")
    assert xmp.add_subject(photo, "receipts") and not xmp.add_subject(photo, "receipts")
    assert xmp.subjects(photo) == ["receipts"]
    other = tmp_path / "b.jpg"
    xmp.sidecar_path(other).write_text(
        '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        'rdf:about="" xmlns:xmp="http://ns.adobe.com/xap/1.0/" xmp:Rating="4"/>'
        '</rdf:RDF></x:xmpmeta>')
    assert xmp.add_subject(other, "pets")
    text = xmp.sidecar_path(other).read_text()
    assert 'xmp:Rating="4"' in text and xmp.subjects(other) == ["pets"]
    broken = tmp_path / "c.jpg"
    xmp.sidecar_path(broken).write_text("not xml")
    with pytest.raises(xmp.SidecarError):
        xmp.add_subject(broken, "pets")
    assert xmp.sidecar_path(broken).read_text() == "not xml"


def test_a_tag_taught_before_any_photo_waits_for_the_library(tmp_path, offline, library):
    from indexer.pipeline import Indexer
    from search.config import load_config
    from search.store import Store

    (tmp_path / "c.yaml").write_text("{}\n")
    config = load_config(tmp_path / "c.yaml", environ={}, overrides={
        "data_dir": str(tmp_path / "data"), "indexer.decode_workers": 0, "model.name": "offline"})
    with Store(config.db_url) as store:
        info = tags.teach(store, offline.model_id, offline.encode_texts, "cats",
                          texts=["a cat"])
        assert info["count"] == 0 and store.tag("cats").weights is None
        Indexer(config, store, offline, progress=False).index([library])
        members = tags.members(store, "cats")
        assert 0 < len(members) < 12  # fitted and applied by the index run, not everything
        assert "chelsea_cat" in {Path(m["path"]).stem for m in members}
