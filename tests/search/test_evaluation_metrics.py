"""retrieval_metrics: hand-computed cases, ties, validation, and agreement with references."""

import numpy as np
import pytest

from search.errors import InputError
from search.evaluation.metrics import retrieval_metrics


def brute_force_ranks(text, image, caption_image):
    """Deliberately naive reference: Python loops over every query and candidate.

    Same definition as retrieval_metrics: rank = 1 + number of wrong candidates whose
    score is >= the target score (for image->text the target is the best own caption).
    """
    n_text, n_image = len(text), len(image)
    score = [[float(np.dot(text[t], image[i])) for i in range(n_image)] for t in range(n_text)]

    t2i = []
    for t in range(n_text):
        own = caption_image[t]
        worse_or_equal = 0
        for i in range(n_image):
            if i != own and score[t][i] >= score[t][own]:
                worse_or_equal += 1
        t2i.append(1 + worse_or_equal)

    i2t = []
    for i in range(n_image):
        own = [t for t in range(n_text) if caption_image[t] == i]
        if not own:
            continue
        best = max(score[t][i] for t in own)
        beaten_by = 0
        for t in range(n_text):
            if caption_image[t] != i and score[t][i] >= best:
                beaten_by += 1
        i2t.append(1 + beaten_by)
    return t2i, i2t


def summary(ranks, ks):
    ranks = np.array(ranks)
    out = {f"R@{k}": float(np.mean(ranks <= k)) for k in ks}
    out["median_rank"] = float(np.median(ranks))
    out["mean_rank"] = float(np.mean(ranks))
    return out


def argsort_reference(text, image, caption_image, ks):
    """The usual full-matrix argsort evaluation (valid when there are no ties)."""
    caption_image = np.asarray(caption_image)
    sims = text @ image.T  # [T, I]
    order = np.argsort(-sims, axis=1)
    t2i = [int(np.flatnonzero(order[t] == caption_image[t])[0]) + 1 for t in range(len(text))]
    order_t = np.argsort(-sims.T, axis=1)
    i2t = []
    for i in range(len(image)):
        own = np.flatnonzero(caption_image == i)
        if own.size:
            i2t.append(int(np.flatnonzero(np.isin(order_t[i], own)).min()) + 1)
    return summary(t2i, ks), summary(i2t, ks)


def unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_perfect_retrieval_gives_recall_one():
    image = np.eye(4)
    text = np.repeat(image, 2, axis=0)  # two identical captions per image
    out = retrieval_metrics(text, image, [0, 0, 1, 1, 2, 2, 3, 3])
    for direction in ("text_to_image", "image_to_text"):
        assert out[direction] == {
            "R@1": 1.0, "R@5": 1.0, "R@10": 1.0, "median_rank": 1.0, "mean_rank": 1.0
        }
    assert out["n_images"] == 4 and out["n_captions"] == 8


def test_hand_computed_three_images_five_captions():
    # Images are the basis vectors, so score[t][i] is simply text[t][i].
    image = np.eye(3)
    text = np.array(
        [
            [0.9, 0.1, 0.2],  # c0 -> img0
            [0.3, 0.85, 0.35],  # c1 -> img0
            [0.2, 0.6, 0.7],  # c2 -> img1
            [0.1, 0.8, 0.0],  # c3 -> img1
            [0.5, 0.3, 0.4],  # c4 -> img2
        ]
    )
    owner = [0, 0, 1, 1, 2]
    # text->image, rank = 1 + other images scoring >= own image:
    #   c0: own 0.9, none higher                 -> 1
    #   c1: own 0.3, 0.85 and 0.35 higher        -> 3
    #   c2: own 0.6, 0.7 higher                  -> 2
    #   c3: own 0.8, none higher                 -> 1
    #   c4: own 0.4, 0.5 higher                  -> 2
    # ranks [1, 3, 2, 1, 2]: R@1 2/5, R@2 4/5, R@3 1, median 2, mean 9/5.
    # image->text, column i, best own caption vs. other images' captions:
    #   img0: scores [.9 .3 .2 .1 .5], own {c0, c1} best .9, nothing higher      -> 1
    #   img1: scores [.1 .85 .6 .8 .3], own {c2, c3} best .8, c1 (.85) higher    -> 2
    #   img2: scores [.2 .35 .7 0 .4], own {c4} .4, c2 (.7) higher               -> 2
    # ranks [1, 2, 2]: R@1 1/3, R@2 1, R@3 1, median 2, mean 5/3.
    out = retrieval_metrics(text, image, owner, ks=(1, 2, 3))
    assert out["text_to_image"] == pytest.approx(
        {"R@1": 0.4, "R@2": 0.8, "R@3": 1.0, "median_rank": 2.0, "mean_rank": 1.8}
    )
    assert out["image_to_text"] == pytest.approx(
        {"R@1": 1 / 3, "R@2": 1.0, "R@3": 1.0, "median_rank": 2.0, "mean_rank": 5 / 3}
    )
    assert brute_force_ranks(text, image, owner) == ([1, 3, 2, 1, 2], [1, 2, 2])


def test_ties_are_ranked_pessimistically():
    # Every embedding identical: every score is equal.
    # text->image: each caption ties with the 1 other image -> rank 2 for all.
    # image->text: each image ties with the 2 captions of the other image -> rank 3;
    # its own 2 captions tying with each other do not count against it.
    text = np.ones((4, 2)) / np.sqrt(2)
    image = np.ones((2, 2)) / np.sqrt(2)
    out = retrieval_metrics(text, image, [0, 0, 1, 1], ks=(1, 2, 3))
    assert out["text_to_image"] == {
        "R@1": 0.0, "R@2": 1.0, "R@3": 1.0, "median_rank": 2.0, "mean_rank": 2.0
    }
    assert out["image_to_text"] == {
        "R@1": 0.0, "R@2": 0.0, "R@3": 1.0, "median_rank": 3.0, "mean_rank": 3.0
    }


def test_partial_ties():
    image = np.eye(3)
    text = np.array(
        [
            [0.5, 0.5, 0.1],  # c0 -> img0, ties with img1 -> rank 2
            [0.2, 0.7, 0.7],  # c1 -> img2, ties with img1 -> rank 2
            [0.9, 0.0, 0.0],  # c2 -> img0, alone at the top -> rank 1
        ]
    )
    # image->text: img0 scores [.5 .2 .9], own {c0, c2} best .9 -> 1
    #              img2 scores [.1 .7 0], own {c1} .7, nothing >= from others -> 1
    out = retrieval_metrics(text, image, [0, 2, 0], ks=(1,))
    assert out["text_to_image"]["R@1"] == pytest.approx(1 / 3)
    assert out["text_to_image"]["mean_rank"] == pytest.approx(5 / 3)
    assert out["image_to_text"]["R@1"] == 1.0


def test_own_captions_tied_at_top_still_rank_one():
    image = np.eye(2)
    # img0 sees [.8 .8 .3]: its two captions tie for first -> rank 1, not 2.
    text = np.array([[0.8, 0.1], [0.8, 0.2], [0.3, 0.9]])
    out = retrieval_metrics(text, image, [0, 0, 1], ks=(1,))
    assert out["image_to_text"]["R@1"] == 1.0


def test_image_without_captions_is_gallery_only():
    image = np.eye(3)  # img2 has no caption
    text = np.array(
        [
            [0.5, 0.1, 0.9],  # c0 -> img0, but img2 scores higher -> rank 2
            [0.2, 0.8, 0.1],  # c1 -> img1 -> rank 1
        ]
    )
    out = retrieval_metrics(text, image, [0, 1], ks=(1,))
    # text->image counts img2 as a distractor.
    assert out["text_to_image"] == {"R@1": 0.5, "median_rank": 1.5, "mean_rank": 1.5}
    # image->text has 2 queries (img0: [.5 .2] -> 1, img1: [.1 .8] -> 1); img2 none.
    assert out["image_to_text"] == {"R@1": 1.0, "median_rank": 1.0, "mean_rank": 1.0}
    assert out["n_images"] == 3
    assert brute_force_ranks(text, image, [0, 1]) == ([2, 1], [1, 1])


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
@pytest.mark.parametrize("chunk", [1, 3, 7, 1024])
def test_matches_brute_force_on_random_data(seed, chunk):
    rng = np.random.default_rng(seed)
    n_image, d = 13, 8
    caption_image = rng.integers(0, n_image, size=40)  # some images get none
    image = unit(rng.normal(size=(n_image, d)))
    # Captions near their image so ranks are spread out rather than all terrible.
    text = unit(image[caption_image] + 1.2 * rng.normal(size=(40, d)))
    ks = (1, 5, 10)
    out = retrieval_metrics(text, image, caption_image, ks=ks, chunk=chunk)

    t2i, i2t = brute_force_ranks(text, image, caption_image.tolist())
    assert out["text_to_image"] == pytest.approx(summary(t2i, ks))
    assert out["image_to_text"] == pytest.approx(summary(i2t, ks))

    ref_t2i, ref_i2t = argsort_reference(text, image, caption_image, ks)
    assert out["text_to_image"] == pytest.approx(ref_t2i)
    assert out["image_to_text"] == pytest.approx(ref_i2t)


@pytest.mark.parametrize("chunk", [1, 4, 50])
def test_matches_brute_force_with_many_ties(chunk):
    # Small integer vectors: dot products are exact, so ties are real ties in any order
    # of summation, and the pessimistic rule is exercised heavily.
    rng = np.random.default_rng(7)
    image = rng.integers(-1, 2, size=(9, 3)).astype(np.float64)
    text = rng.integers(-1, 2, size=(30, 3)).astype(np.float64)
    caption_image = rng.integers(0, 9, size=30)
    ks = (1, 2, 5)
    out = retrieval_metrics(text, image, caption_image, ks=ks, chunk=chunk)
    t2i, i2t = brute_force_ranks(text, image, caption_image.tolist())
    assert out["text_to_image"] == pytest.approx(summary(t2i, ks))
    assert out["image_to_text"] == pytest.approx(summary(i2t, ks))


def test_float32_input_and_plain_floats():
    rng = np.random.default_rng(5)
    image = unit(rng.normal(size=(6, 4))).astype(np.float32)
    text = unit(rng.normal(size=(12, 4))).astype(np.float32)
    out = retrieval_metrics(text, image, list(range(6)) * 2, chunk=5)
    for direction in ("text_to_image", "image_to_text"):
        assert all(type(v) is float for v in out[direction].values())
    assert type(out["n_images"]) is int and type(out["n_captions"]) is int


@pytest.mark.parametrize("bad", [3, -1])
def test_out_of_range_caption_image(bad):
    with pytest.raises(InputError, match=r"caption_image\[1\] = .* out of range for 3 images"):
        retrieval_metrics(np.eye(3), np.eye(3), [0, bad, 2])


def test_dimension_mismatch():
    with pytest.raises(InputError, match="dimension 3 .* 4; encode both with the same model"):
        retrieval_metrics(np.ones((2, 3)), np.ones((2, 4)), [0, 1])


def test_caption_image_length_mismatch():
    with pytest.raises(InputError, match=r"one image index per caption \(3\)"):
        retrieval_metrics(np.eye(3), np.eye(3), [0, 1])


def test_zero_captions():
    with pytest.raises(InputError, match="no captions"):
        retrieval_metrics(np.zeros((0, 3)), np.eye(3), [])


def test_zero_images():
    with pytest.raises(InputError, match="no images"):
        retrieval_metrics(np.eye(3), np.zeros((0, 3)), [0, 0, 0])


def test_not_a_matrix():
    with pytest.raises(InputError, match="Text embeddings must be a 2-D array"):
        retrieval_metrics(np.ones(3), np.eye(3), [0])


def test_non_integer_caption_image():
    with pytest.raises(InputError, match="integer image indices"):
        retrieval_metrics(np.eye(2), np.eye(2), [0.0, 1.0])


def test_nan_embeddings():
    text = np.eye(2)
    text[0, 0] = np.nan
    with pytest.raises(InputError, match="NaN"):
        retrieval_metrics(text, np.eye(2), [0, 1])


@pytest.mark.parametrize("ks", [(), (0,), (1, -5), ("1",)])
def test_bad_ks(ks):
    with pytest.raises(InputError, match="ks must be"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 1], ks=ks)


@pytest.mark.parametrize("chunk", [0, -1, 2.5])
def test_bad_chunk(chunk):
    with pytest.raises(InputError, match="chunk must be a positive integer"):
        retrieval_metrics(np.eye(2), np.eye(2), [0, 1], chunk=chunk)
