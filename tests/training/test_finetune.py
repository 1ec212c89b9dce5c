"""``pixseek finetune`` end to end: real tiny CLIPs trained on the synthetic set, real files.

The runs go through the console's own click group, in process (as tests/e2e/test_bench.py
does), on the CPU, so that a run is deterministic. The error cases go through ``main``, as
tests/e2e/test_cli_errors.py does, to see the one ``Error:`` line and the exit code.
"""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file

from pixseek.cli import cli
from search.evaluation.captions import load_caption_set
from training.contrastive import clip_loss
from training.synth import render_synth

pytestmark = pytest.mark.slow  # trains models

PAIRS = 200  # 160 train images (about 620 captions), 40 test images
# The acceptance run: from a random tiny CLIP, R@5 on the 40 held-out test images goes from
# chance (about 0.12) to about 0.5 with these settings (seeds 0-4 gave +0.38 to +0.46).
EPOCHS, BATCH, LR = 2, 16, 2e-3
ENV = {"PIXSEEK_INDEXER_DECODE_WORKERS": "0", "PIXSEEK_CONFIG": None}


def pixseek(data: Path, *args: str):
    result = CliRunner().invoke(cli, ["--data-dir", str(data), "--device", "cpu", *args],
                                env=ENV, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def finetune(data: Path, synth: dict, *args: str):
    return pixseek(data, "finetune", "--captions", str(synth["captions"]),
                   "--images", str(synth["images"]), *args)


def summary(out: Path) -> dict:
    return json.loads((out / "training.json").read_text())


def weights(folder: Path) -> dict[str, torch.Tensor]:
    return load_file(str(folder / "model.safetensors"))


def last_epoch_weights(out: Path) -> dict[str, torch.Tensor]:
    """The model after the last epoch run (the folder itself holds the best epoch)."""
    return torch.load(out / "checkpoint" / "state.pt", map_location="cpu",
                      weights_only=False)["model"]


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("synth")
    captions = render_synth(root / "set", PAIRS)
    return {"captions": captions, "images": captions.parent / "images",
            "data": root / "data", "root": root}


@pytest.fixture(scope="module")
def tuned(synth, tiny_clip_dir) -> Path:
    """The acceptance run: the tiny random CLIP fine-tuned on the train split."""
    out = synth["root"] / "tuned"
    finetune(synth["data"], synth, "--model", str(tiny_clip_dir), "--out", str(out),
             "--epochs", str(EPOCHS), "--batch-size", str(BATCH), "--lr", str(LR),
             "--seed", "0", "--json", str(synth["root"] / "run.json"))
    return out


@pytest.fixture(scope="module")
def bench(synth, tiny_clip_dir, tuned) -> dict:
    out = synth["root"] / "bench.json"
    pixseek(synth["data"], "bench", "retrieval", "--captions", str(synth["captions"]),
            "--images", str(synth["images"]), "--model", str(tiny_clip_dir),
            "--model", str(tuned), "--split", "test", "--json", str(out))
    return json.loads(out.read_text())


def small_run(synth: dict, out: Path, *args: str) -> dict:
    """A quick run on the set's 40 test-split images (about 9 steps of 16 an epoch)."""
    finetune(synth["data"], synth, "--split", "test", "--out", str(out), "--batch-size",
             "16", *args)
    return summary(out)


# 1. The acceptance test


def test_finetuning_improves_held_out_recall(bench, tiny_clip_dir, tuned, synth):
    start, after = bench["models"][str(tiny_clip_dir)], bench["models"][str(tuned)]
    assert bench["split"] == "test" and bench["n_images"] == 40
    assert after["model_id"] == str(tuned.resolve())
    assert after["text_to_image"]["R@5"] > start["text_to_image"]["R@5"], (start, after)
    # Held out: training saw only the train split (its own validation is carved from it).
    run = summary(tuned)
    train_split = load_caption_set(synth["captions"], split="train")
    assert run["train"]["images"] + run["validation"]["images"] == train_split.n_images
    assert run["train"]["captions"] + run["validation"]["captions"] == train_split.n_captions


# 2. The trained folder is a model every command loads


def test_the_trained_folder_indexes_and_searches(tuned, synth, tmp_path):
    photos = tmp_path / "photos"
    photos.mkdir()
    for png in sorted(synth["images"].glob("*.png"))[:12]:
        shutil.copy2(png, photos / png.name)
    data = tmp_path / "data"
    indexed = json.loads(pixseek(data, "--model", str(tuned), "index", str(photos),
                                 "--json").stdout)
    assert indexed["encoded"] == 12 and indexed["failed"] == 0
    # --no-collapse: a briefly trained model sees many of these shapes as near-duplicates
    results = json.loads(pixseek(data, "--model", str(tuned), "search", "a red circle",
                                 "-k", "5", "--no-collapse", "--json").stdout)
    assert len(results) == 5
    assert all(Path(r["path"]).parent == photos.resolve() for r in results)
    assert [r["score"] for r in results] == sorted((r["score"] for r in results), reverse=True)
    for name in ("config.json", "model.safetensors", "preprocessor_config.json",
                 "tokenizer_config.json"):
        assert (tuned / name).is_file(), name

    # serve: the web app's engine loads the folder by the configuration's model name.
    from search.config import load_config
    from search.engine import Engine
    from webui import create_app

    config = load_config(None, overrides={"data_dir": str(data), "model.name": str(tuned),
                                          "model.device": "cpu"}, environ={})
    with Engine(config) as engine:
        client = create_app(config, engine).test_client()
        response = client.get("/api/search?q=a+red+circle&k=5&collapse=0")
        assert response.status_code == 200, response.get_data(as_text=True)
        served = [r["path"] for r in response.get_json()["results"]]
        assert served == [r["path"] for r in results]


# 3. training.json


def test_training_json_records_the_run(tuned, synth):
    run = summary(tuned)
    args = run["arguments"]
    assert args["captions"] == str(synth["captions"]) and args["images"] == str(synth["images"])
    assert (args["epochs"], args["batch_size"], args["lr"], args["train"], args["seed"],
            args["split"]) == (EPOCHS, BATCH, LR, "all", 0, "train")
    assert len(run["data_hash"]) == 32 and int(run["data_hash"], 16) >= 0
    assert run["from_scratch"] is False and run["device"] == "cpu"
    assert [r["epoch"] for r in run["curve"]] == list(range(EPOCHS + 1))
    before = run["curve"][0]
    assert before["train_loss"] is None and before["seconds"] == 0
    for record in run["curve"]:
        for direction in ("text_to_image", "image_to_text"):
            recalls = [record["validation"][direction][f"R@{k}"] for k in (1, 5, 10)]
            assert all(0 <= r <= 1 for r in recalls) and recalls == sorted(recalls)
    assert all(r["train_loss"] > 0 and r["seconds"] > 0 for r in run["curve"][1:])
    rsum = [sum(r["validation"][d][f"R@{k}"] for d in ("text_to_image", "image_to_text")
                for k in (1, 5, 10)) for r in run["curve"]]
    assert run["best_epoch"] == int(np.argmax(rsum))
    assert run["final"] == run["curve"][run["best_epoch"]]["validation"]
    assert run["pairs_per_second"] > 0
    # --json FILE writes the same record.
    assert json.loads((synth["root"] / "run.json").read_text()) == run


def test_the_folder_holds_the_recorded_best_epoch(tuned, synth):
    """Reloaded through pixseek's loader, the saved model scores what ``final`` says on the
    validation images (read back from the run's own pixel cache)."""
    from search.encoders import load_encoder
    from search.evaluation.metrics import retrieval_metrics
    from training.data import split_by_image

    run = summary(tuned)
    captions = load_caption_set(synth["captions"], split="train")
    _, val = split_by_image(captions.n_images, 0.1, seed=0)
    (cache,) = (tuned / "checkpoint").glob("pixels-*.npy")
    pixels = np.load(cache)[val]  # uint8: encode_pixels normalises it
    owner = np.asarray(captions.caption_image)
    rows = np.flatnonzero(np.isin(owner, val))
    encoder = load_encoder(str(tuned), device="cpu")
    metrics = retrieval_metrics(encoder.encode_texts([captions.captions[i] for i in rows]),
                                encoder.encode_pixels(pixels), np.searchsorted(val, owner[rows]),
                                ks=(1, 5, 10))
    for direction in ("text_to_image", "image_to_text"):
        for k in (1, 5, 10):
            assert metrics[direction][f"R@{k}"] == pytest.approx(
                run["final"][direction][f"R@{k}"]), (direction, k)


# 4. --resume


@pytest.fixture(scope="module")
def uninterrupted(synth, tiny_clip_dir) -> Path:
    out = synth["root"] / "two-epochs"
    small_run(synth, out, "--model", str(tiny_clip_dir), "--epochs", "2", "--lr", str(LR))
    return out


def test_resume_after_a_stop_gives_the_uninterrupted_run(synth, tiny_clip_dir, uninterrupted):
    """Stopped after epoch 1 (by --max-minutes), then resumed: the same weights and curve as
    a run that was never stopped."""
    out = synth["root"] / "stopped"
    common = ["--model", str(tiny_clip_dir), "--epochs", "2", "--lr", str(LR)]
    stopped = small_run(synth, out, *common, "--max-minutes", "0.00001")
    assert [r["epoch"] for r in stopped["curve"]] == [0, 1]
    resumed = small_run(synth, out, *common, "--resume")
    whole = summary(uninterrupted)
    assert [r["epoch"] for r in resumed["curve"]] == [0, 1, 2]
    assert resumed["data_hash"] == whole["data_hash"]
    for a, b in zip(resumed["curve"], whole["curve"], strict=True):
        assert (a["train_loss"], a["validation"]) == (b["train_loss"], b["validation"])
    assert resumed["best_epoch"] == whole["best_epoch"]
    # The checkpoint holds the last epoch; the folder the best (which may be epoch 0 here).
    for got, want in ((last_epoch_weights(out), last_epoch_weights(uninterrupted)),
                      (weights(out), weights(uninterrupted))):
        assert got.keys() == want.keys()
        for key in want:
            torch.testing.assert_close(got[key], want[key], rtol=0, atol=1e-6, msg=key)


@pytest.fixture
def cli_fails(cli_error, monkeypatch):
    """``cli_fails(argv, message)``: ``pixseek --device cpu ARGV`` is one error line (exit 2)
    holding ``message``."""
    monkeypatch.setenv("PIXSEEK_INDEXER_DECODE_WORKERS", "0")

    def check(argv: list[str], message: str) -> None:
        assert message in cli_error(["--device", "cpu", *argv])

    return check


def finetune_argv(synth: dict, *args: str) -> list[str]:
    return ["--data-dir", str(synth["data"]), "finetune", "--captions", str(synth["captions"]),
            "--images", str(synth["images"]), *args]


def test_an_existing_run_needs_resume_and_resume_needs_a_run(
        synth, uninterrupted, tiny_clip_dir, tmp_path, cli_fails):
    before = (uninterrupted / "training.json").read_text()
    cli_fails(finetune_argv(synth, "--split", "test", "--model", str(tiny_clip_dir),
                            "--out", str(uninterrupted)), "--resume")
    assert (uninterrupted / "training.json").read_text() == before
    empty = tmp_path / "empty"
    empty.mkdir()
    cli_fails(finetune_argv(synth, "--split", "test", "--model", str(tiny_clip_dir),
                            "--out", str(empty), "--resume"), "nothing to resume")
    assert not any(empty.iterdir())


@pytest.mark.parametrize("changed", [
    ("--epochs", "3"),  # the schedule follows from it: the run would not be the one started
    ("--train", "proj"),  # other parameters learn: the optimizer state cannot fit
    ("--batch-size", "8"),
    ("--seed", "3"),  # another validation split
    ("--model", "tiny"),
])
def test_resume_with_other_settings_is_one_error_line(
        synth, uninterrupted, tiny_clip_dir, tmp_path, cli_fails, changed):
    out = tmp_path / "run"
    shutil.copytree(uninterrupted, out)
    before = (out / "training.json").read_text()
    args = {"--model": str(tiny_clip_dir), "--batch-size": "16", "--epochs": "2",
            "--lr": str(LR), "--seed": "0"} | dict([changed])
    argv = [x for pair in args.items() for x in pair]
    cli_fails(finetune_argv(synth, "--split", "test", *argv, "--out", str(out), "--resume"),
              f"{changed[0]} {changed[1]} differs from the stopped run")
    assert (out / "training.json").read_text() == before
    assert not (out / "checkpoint" / "initial").exists()


# 5. What learns


def trained_by(synth, tiny_clip_dir, mode: str) -> tuple[dict, dict]:
    """(start, trained) state dicts after one epoch of --train MODE. No validation split,
    so the folder holds epoch 1 whatever it scores."""
    from transformers import CLIPModel

    out = synth["root"] / f"train-{mode}"
    run = small_run(synth, out, "--model", str(tiny_clip_dir), "--train", mode,
                    "--epochs", "1", "--val-fraction", "0")
    assert run["best_epoch"] == 1 and run["final"] is None
    start = CLIPModel.from_pretrained(tiny_clip_dir).state_dict()
    after = CLIPModel.from_pretrained(out).state_dict()
    assert start.keys() == after.keys()
    return start, after


def changed(start: dict, after: dict, prefix: str) -> set[str]:
    keys = [k for k in start if k.startswith(prefix)]
    assert keys, prefix
    return {k for k in keys if not torch.equal(start[k], after[k])}


def test_train_proj_changes_only_projections_and_logit_scale(synth, tiny_clip_dir):
    start, after = trained_by(synth, tiny_clip_dir, "proj")
    assert changed(start, after, "text_model.") == set()
    assert changed(start, after, "vision_model.") == set()
    assert changed(start, after, "text_projection") == {"text_projection.weight"}
    assert changed(start, after, "visual_projection") == {"visual_projection.weight"}
    assert changed(start, after, "logit_scale") == {"logit_scale"}


def test_train_text_leaves_the_vision_tower(synth, tiny_clip_dir):
    start, after = trained_by(synth, tiny_clip_dir, "text")
    assert changed(start, after, "vision_model.") == set()
    assert changed(start, after, "visual_projection") == set()
    assert "text_model.encoder.layers.0.self_attn.q_proj.weight" in changed(
        start, after, "text_model.")
    assert changed(start, after, "text_projection") == {"text_projection.weight"}


def test_train_lora_saves_a_plain_merged_clip(synth, tiny_clip_dir):
    from search.encoders import load_encoder

    start, after = trained_by(synth, tiny_clip_dir, "lora")
    saved = weights(synth["root"] / "train-lora")
    assert not [k for k in saved if "lora_" in k or "base_layer" in k or "modules_to_save" in k]
    assert saved.keys() == weights(tiny_clip_dir).keys()
    for tower in ("text_model.", "vision_model."):
        moved = changed(start, after, tower)
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            assert f"{tower}encoder.layers.0.self_attn.{proj}.weight" in moved, (tower, proj)
        # LoRA adapts the attention only: the MLPs and embeddings stay as they were.
        assert not [k for k in moved if "self_attn" not in k], moved
    encoder = load_encoder(str(synth["root"] / "train-lora"), device="cpu")
    vectors = encoder.encode_texts(["a red circle on a white background", "two blue stars"])
    assert vectors.shape == (2, 32) and np.allclose(np.linalg.norm(vectors, axis=1), 1)


# 6. The loss


def test_clip_loss_masks_captions_of_the_same_image():
    """Rows 0 and 1 are two captions of image 0: neither is the other's negative."""
    basis = torch.eye(4)
    images = basis[[0, 0, 1, 2]]  # image 0 twice, as a batch holds it for two captions
    texts = basis[[0, 0, 1, 2]]  # each caption embedded where its image is
    scale = torch.tensor(math.log(100.0))
    masked = clip_loss(images, texts, scale, torch.tensor([0, 0, 1, 2]))
    assert float(masked) < 1e-6
    # Were the duplicate a negative (distinct ids), rows 0 and 1 would each cost ln 2 both
    # ways: a loss of 2 ln 2 / 4 over the batch.
    unmasked = clip_loss(images, texts, scale, torch.tensor([0, 1, 2, 3]))
    assert float(unmasked) == pytest.approx(2 * math.log(2) / 4, rel=1e-5)
    for row in (0, 1):
        one = torch.nn.functional.cross_entropy(
            scale.exp() * images[[row]] @ texts.T, torch.tensor([row]))
        assert float(one) >= math.log(2) - 1e-6
    # The mask spares true pairs only: a caption on the wrong image still costs a lot.
    wrong = clip_loss(images, basis[[0, 0, 2, 1]], scale, torch.tensor([0, 0, 1, 2]))
    assert float(wrong) > 10
    # And the loss is symmetric in its two towers.
    a, b = torch.randn(6, 8), torch.randn(6, 8)
    ids = torch.tensor([0, 0, 1, 2, 3, 3])
    assert float(clip_loss(a, b, scale, ids)) == pytest.approx(float(clip_loss(b, a, scale, ids)))


# 7. Bad input


def test_bad_input_is_one_error_line(synth, tiny_clip_dir, tmp_path, cli_fails):
    model = ["--model", str(tiny_clip_dir)]

    def fails(message: str, *args: str, out: Path | None = None, argv=None) -> None:
        target = out or tmp_path / "out"
        cli_fails((argv or finetune_argv(synth, *args)) + ["--out", str(target)], message)

    # One image of the train split missing, in a copy of the set.
    copy = tmp_path / "copy"
    shutil.copytree(synth["captions"].parent, copy)
    train = load_caption_set(copy / "captions.json", split="train")
    (copy / "images" / train.images[7]).unlink()
    fails(train.images[7], argv=["--data-dir", str(synth["data"]), "finetune", "--captions",
                                 str(copy / "captions.json"), "--images", str(copy / "images"),
                                 *model])
    fails("too few for --batch-size 100000", "--split", "test", *model,
          "--batch-size", "100000")
    fails("offline model cannot be trained", "--model", "offline")
    fails("--epochs must be 1 or more", *model, "--epochs", "0")
    fails("--val-fraction", "--split", "test", *model, "--val-fraction", "1")
    others = tmp_path / "others"
    others.mkdir()
    (others / "notes.txt").write_text("mine")
    fails("is not empty", *model, out=others)
    assert [p.name for p in others.iterdir()] == ["notes.txt"]


# 8. From scratch


def test_from_scratch_with_a_size_name(synth, monkeypatch):
    monkeypatch.chdir(synth["root"])  # no folder named "tiny" here
    out = synth["root"] / "scratch"
    run = small_run(synth, out, "--model", "tiny", "--epochs", "1")
    assert run["from_scratch"] is True and run["model_id"] == "scratch:tiny"
    assert run["arguments"]["model"] == "tiny" and run["arguments"]["lr"] == 5e-4
    assert [r["epoch"] for r in run["curve"]] == [0, 1]
    assert (out / "checkpoint" / "initial" / "config.json").is_file()
    from transformers import CLIPModel

    model = CLIPModel.from_pretrained(out)
    assert model.config.projection_dim == 32 and model.config.vision_config.hidden_size == 32
