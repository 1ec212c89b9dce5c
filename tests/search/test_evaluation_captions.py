"""load_caption_set: every supported format, grouping, and clear errors."""

import json

import pytest

from search.errors import InputError
from search.evaluation.captions import CaptionSet, load_caption_set

KARPATHY = {
    "dataset": "flickr30k",
    "images": [
        {
            "filename": "1000.jpg",
            "split": "train",
            "sentences": [{"raw": "A train image .", "tokens": ["a", "train", "image"]}],
        },
        {
            "filename": "2000.jpg",
            "split": "test",
            "sentences": [
                {"raw": "  Two dogs play in the snow . ", "tokens": []},
                {"raw": "Dogs in snow.", "tokens": []},
                {"raw": "   ", "tokens": []},
            ],
        },
        {"filename": "3000.jpg", "split": "val", "sentences": [{"raw": "A val image."}]},
        {
            "filename": "4000.jpg",
            "split": "test",
            "sentences": [{"tokens": ["only", "tokens", "here"]}],
        },
    ],
}


def write(tmp_path, name, content):
    path = tmp_path / name
    if isinstance(content, (dict, list)):
        content = json.dumps(content)
    path.write_text(content, encoding="utf-8")
    return path


def test_karpathy_test_split(tmp_path):
    cs = load_caption_set(write(tmp_path, "dataset_flickr30k.json", KARPATHY))
    assert isinstance(cs, CaptionSet)
    assert cs.images == ["2000.jpg", "4000.jpg"]
    # Whitespace stripped, the empty caption skipped, tokens used when raw is missing.
    assert cs.captions == ["Two dogs play in the snow .", "Dogs in snow.", "only tokens here"]
    assert cs.caption_image == [0, 0, 1]
    assert cs.name == "flickr30k-test"


def test_karpathy_other_split_and_all(tmp_path):
    path = write(tmp_path, "dataset_flickr30k.json", KARPATHY)
    assert load_caption_set(path, split="val").images == ["3000.jpg"]
    everything = load_caption_set(path, split=None)
    assert everything.images == ["1000.jpg", "2000.jpg", "3000.jpg", "4000.jpg"]
    assert everything.caption_image == [0, 1, 1, 2, 3]
    assert everything.name == "flickr30k"


def test_karpathy_coco_filepath(tmp_path):
    data = {
        "dataset": "coco",
        "images": [
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000000042.jpg",
                "split": "test",
                "sentences": [{"raw": "A cat."}, {"raw": "A cat on a mat."}],
            },
            {
                "filepath": "val2014",
                "filename": "COCO_val2014_000000000073.jpg",
                "split": "restval",
                "sentences": [{"raw": "Not in test."}],
            },
        ],
    }
    cs = load_caption_set(write(tmp_path, "dataset_coco.json", data))
    assert cs.images == ["val2014/COCO_val2014_000000000042.jpg"]
    assert cs.caption_image == [0, 0]


def test_karpathy_missing_split_names_available_splits(tmp_path):
    path = write(tmp_path, "dataset_flickr30k.json", KARPATHY)
    with pytest.raises(InputError) as err:
        load_caption_set(path, split="restval")
    msg = str(err.value)
    assert "no images with split 'restval'" in msg
    assert "dataset_flickr30k.json" in msg
    assert "test (2 images)" in msg and "train (1 images)" in msg and "val (1 images)" in msg
    assert "\n" not in msg


def test_coco_captions(tmp_path):
    data = {
        "info": {},
        "images": [
            {"id": 139, "file_name": "000000000139.jpg"},
            {"id": 285, "file_name": "000000000285.jpg"},
            {"id": 632, "file_name": "000000000632.jpg"},  # no caption: gallery only
        ],
        "annotations": [
            {"id": 1, "image_id": 285, "caption": "A big bear. "},
            {"id": 2, "image_id": 139, "caption": "A living room."},
            {"id": 3, "image_id": 285, "caption": "A brown bear sitting."},
            {"id": 4, "image_id": 139, "caption": ""},
        ],
    }
    cs = load_caption_set(write(tmp_path, "captions_val2017.json", data), split="test")
    assert cs.images == ["000000000139.jpg", "000000000285.jpg", "000000000632.jpg"]
    assert cs.captions == ["A big bear.", "A living room.", "A brown bear sitting."]
    assert cs.caption_image == [1, 0, 1]
    assert cs.name == "captions_val2017"


def test_coco_annotation_for_unknown_image(tmp_path):
    data = {
        "images": [{"id": 1, "file_name": "a.jpg"}],
        "annotations": [{"image_id": 99, "caption": "x"}],
    }
    with pytest.raises(InputError, match=r"bad\.json: annotations\[0\] refers to image_id 99"):
        load_caption_set(write(tmp_path, "bad.json", data))


def test_csv_with_header_groups_and_comments(tmp_path):
    content = (
        "# my benchmark\n"
        "Caption,Image,source\n"
        "A red car.,cars/1.jpg,me\n"
        '"A car, parked.",cars/1.jpg,me\n'
        "\n"
        "# a comment in the middle\n"
        "  A boat. ,boats/7.jpg,me\n"
        ",boats/8.jpg,me\n"
        "Another red car.,cars/1.jpg,me\n"
    )
    cs = load_caption_set(write(tmp_path, "mine.csv", content))
    assert cs.images == ["cars/1.jpg", "boats/7.jpg", "boats/8.jpg"]
    assert cs.captions == ["A red car.", "A car, parked.", "A boat.", "Another red car."]
    assert cs.caption_image == [0, 0, 1, 0]
    assert cs.name == "mine"


def test_tsv_without_header(tmp_path):
    content = "a.jpg\tA dog, running.\nb.jpg\tA cat.\na.jpg\tA dog.\n"
    cs = load_caption_set(write(tmp_path, "pairs.tsv", content))
    assert cs.images == ["a.jpg", "b.jpg"]
    assert cs.captions == ["A dog, running.", "A cat.", "A dog."]
    assert cs.caption_image == [0, 1, 0]


def test_tab_delimiter_sniffed_from_content(tmp_path):
    content = "#comment\nfilename\tdescription\nx/1.png\tA tree.\n"
    cs = load_caption_set(write(tmp_path, "pairs.txt", content))
    assert cs.images == ["x/1.png"] and cs.captions == ["A tree."]


def test_flickr30k_results_csv_pipe_format(tmp_path):
    content = (
        "image_name| comment_number| comment\n"
        "1000092795.jpg| 0| Two young guys with shaggy hair .\n"
        "1000092795.jpg| 1| Two young , White males are outside .\n"
    )
    cs = load_caption_set(write(tmp_path, "results.csv", content))
    assert cs.images == ["1000092795.jpg"]
    assert cs.captions[1] == "Two young , White males are outside ."


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match=r"captions file not found: .*nope\.json"):
        load_caption_set(tmp_path / "nope.json")


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(InputError, match="is not a file"):
        load_caption_set(tmp_path)


def test_invalid_json(tmp_path):
    with pytest.raises(InputError, match=r"broken\.json is not valid JSON \(line 1"):
        load_caption_set(write(tmp_path, "broken.json", '{"images": [}'))


def test_unknown_json_format(tmp_path):
    path = write(tmp_path, "other.json", {"images": [{"file_name": "a.jpg"}]})
    with pytest.raises(InputError, match=r"unknown captions format in .*other\.json"):
        load_caption_set(path)
    with pytest.raises(InputError, match="unknown captions format"):
        load_caption_set(write(tmp_path, "list.json", [1, 2]))


def test_not_utf8(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("image,caption\na.jpg,caf\xe9\n".encode("latin-1"))
    with pytest.raises(InputError, match=r"latin\.csv is not UTF-8"):
        load_caption_set(path)


def test_empty_file(tmp_path):
    with pytest.raises(InputError, match=r"empty\.csv is empty"):
        load_caption_set(write(tmp_path, "empty.csv", "\n  \n"))
    with pytest.raises(InputError, match="only comments"):
        load_caption_set(write(tmp_path, "comments.csv", "# nothing\n"))


def test_missing_caption_column(tmp_path):
    path = write(tmp_path, "cols.csv", "image,label\na.jpg,dog\n")
    with pytest.raises(InputError) as err:
        load_caption_set(path)
    msg = str(err.value)
    assert "cols.csv" in msg and "no caption column" in msg and "'label'" in msg


def test_missing_image_column(tmp_path):
    path = write(tmp_path, "cols.csv", "name,caption\na.jpg,dog\n")
    with pytest.raises(InputError, match="caption column but no image column"):
        load_caption_set(path)


def test_headerless_needs_two_columns(tmp_path):
    path = write(tmp_path, "three.csv", "a.jpg,A dog,extra\n")
    with pytest.raises(InputError, match=r"three\.csv: first row has no image/caption header"):
        load_caption_set(path)
    path = write(tmp_path, "later.csv", "a.jpg,A dog\n# c\nb.jpg,A cat, unquoted\n")
    with pytest.raises(InputError, match=r"later\.csv line 3: expected 2 columns"):
        load_caption_set(path)


def test_empty_image_cell(tmp_path):
    path = write(tmp_path, "blank.csv", "image,caption\n,A dog\n")
    with pytest.raises(InputError, match=r"blank\.csv line 2: the image column is empty"):
        load_caption_set(path)


def test_no_captions_at_all(tmp_path):
    data = {"images": [{"filename": "a.jpg", "split": "test", "sentences": [{"raw": " "}]}]}
    with pytest.raises(InputError, match=r"no captions found in .*nocap\.json"):
        load_caption_set(write(tmp_path, "nocap.json", data))
    with pytest.raises(InputError, match="no captions found"):
        load_caption_set(write(tmp_path, "nocap.csv", "image,caption\na.jpg,\n"))
