"""Report tables and the published-number comparison."""

import pytest

from search.errors import InputError
from search.evaluation.published import PUBLISHED, compare, published
from search.evaluation.report import format_markdown, format_table

RESULTS = {
    "models": {
        "openai/clip-vit-base-patch32": {
            "text_to_image": {
                "R@1": 0.5912, "R@5": 0.8342, "R@10": 0.9, "median_rank": 1.0, "mean_rank": 6.1
            },
            "image_to_text": {
                "R@1": 0.781, "R@5": 0.95, "R@10": 0.982, "median_rank": 1.0, "mean_rank": 2.0
            },
            "n_images": 1000,
            "n_captions": 5000,
        },
        "my-small-model": {
            "text_to_image": {
                "R@1": 0.123, "R@5": 0.3456, "R@10": 0.5, "median_rank": 10.5, "mean_rank": 40.0
            },
            "image_to_text": {
                "R@1": 0.2, "R@5": 0.4, "R@10": 0.6, "median_rank": 7.0, "mean_rank": 30.0
            },
        },
    }
}


def test_table_has_models_and_percentages():
    table = format_table(RESULTS)
    lines = table.splitlines()
    assert lines[0].split() == ["Model", "Direction", "R@1", "R@5", "R@10", "medR"]
    assert set(lines[1]) <= {"-", " "}
    assert len(lines) == 2 + 4  # header, rule, 2 models x 2 directions
    row = lines[2].split()
    assert row == ["openai/clip-vit-base-patch32", "text->image", "59.1", "83.4", "90.0", "1"]
    assert lines[3].split()[1:] == ["image->text", "78.1", "95.0", "98.2", "1"]
    # A later model shows its gain over the first in points: the base-vs-tuned comparison.
    assert lines[4].split() == ["my-small-model", "text->image", "12.3", "(-46.8)", "34.6",
                                "(-48.9)", "50.0", "(-40.0)", "10.5"]
    # Numbers are right-aligned: every row has the same length.
    assert len({len(line) for line in lines[2:]}) == 1


def test_markdown_table():
    md = format_markdown(RESULTS)
    lines = md.splitlines()
    assert lines[0] == "| Model | Direction | R@1 | R@5 | R@10 | medR |"
    assert lines[1] == "| --- | --- | ---: | ---: | ---: | ---: |"
    assert lines[2] == "| openai/clip-vit-base-patch32 | text → image | 59.1 | 83.4 | 90.0 | 1 |"
    gains = "| 20.0 (-58.1) | 40.0 (-55.0) | 60.0 (-38.2) | 7 |"
    assert f"| my-small-model | image → text {gains}" in lines


def test_comparison_columns():
    model = "openai/clip-vit-base-patch32"
    comparisons = {model: compare(RESULTS["models"][model], model, "flickr30k")}
    table = format_table(RESULTS, comparisons)
    header = table.splitlines()[0].split()
    assert header[-6:] == ["Pub", "R@1", "Pub", "R@5", "Pub", "R@10"]
    # Published Flickr30k t2i R@1 58.78 -> 58.8; ours 59.12 -> +0.3 points.
    assert "58.8 (+0.3)" in table
    small_row = next(line for line in table.splitlines() if line.startswith("my-small-model"))
    assert small_row.split()[-3:] == ["-", "-", "-"]

    md = format_markdown(RESULTS, comparisons)
    assert "| Pub R@1 | Pub R@5 | Pub R@10 |" in md.splitlines()[0]
    assert "78.9 (-0.8)" in md  # i2t R@1: 78.10 - 78.90
    assert "openclip_retrieval_results.csv" in md  # source listed under the table


def test_empty_results():
    with pytest.raises(InputError, match="no model results"):
        format_table({"models": {}})


def test_published_lookup():
    entry = published("openai/clip-vit-large-patch14-336", "coco")
    assert entry["text_to_image"] == {"R@1": 0.3709, "R@5": 0.6162, "R@10": 0.7147}
    assert entry["also"][0]["image_to_text"] == {"R@1": 0.584, "R@5": 0.815, "R@10": 0.881}
    assert "Table 13" in entry["also"][0]["source"]
    assert published("OpenAI/CLIP-ViT-Base-Patch16", "MSCOCO") is PUBLISHED[
        "openai/clip-vit-base-patch16"
    ]["coco"]
    assert published("laion/something", "coco") is None
    assert published("openai/clip-vit-base-patch32", "imagenet") is None


def test_published_table_is_well_formed():
    assert set(PUBLISHED) == {
        "openai/clip-vit-base-patch32",
        "openai/clip-vit-base-patch16",
        "openai/clip-vit-large-patch14",
        "openai/clip-vit-large-patch14-336",
    }
    for per_model in PUBLISHED.values():
        assert set(per_model) == {"flickr30k", "coco"}
        for entry in per_model.values():
            for e in [entry, *entry.get("also", [])]:
                assert e["source"]
                for direction in ("text_to_image", "image_to_text"):
                    values = e[direction]
                    assert list(values) == ["R@1", "R@5", "R@10"]
                    assert 0 < values["R@1"] <= values["R@5"] <= values["R@10"] <= 1


def test_compare_values_and_unknown():
    ours = {"text_to_image": {"R@1": 0.6, "R@5": 0.8}, "image_to_text": {}}
    out = compare(ours, "openai/clip-vit-base-patch32", "flickr30k")
    assert out["text_to_image"]["R@1"] == pytest.approx(
        {"ours": 0.6, "published": 0.5878, "diff": 0.6 - 0.5878}
    )
    assert set(out["text_to_image"]) == {"R@1", "R@5"}  # R@10 missing from ours
    assert out["image_to_text"] == {}
    with pytest.raises(InputError, match="no published retrieval numbers for 'x/y'"):
        compare(ours, "x/y", "coco")
