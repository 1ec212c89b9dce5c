"""``pixseek finetune``: train a CLIP model contrastively on captioned photos.

One run: load the model (a checkpoint, or a size name for random weights), decode the
images once, hold out a validation split by image, then epochs of the symmetric InfoNCE
loss with AdamW, warm-up and cosine decay. After every epoch it scores validation Recall@K
with the bench's own metric code, keeps the best epoch as a normal transformers folder in
``--out``, and saves a resumable checkpoint under ``--out/checkpoint``.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch

from search.config import Config
from search.encoders.clip import ClipEncoder, image_forward
from search.encoders.pixels import to_model_input
from search.errors import InputError
from search.evaluation.captions import load_caption_set
from search.evaluation.metrics import retrieval_metrics
from search.files import atomic_write
from training import contrastive, data
from training.scratch import SIZES, build_random_clip

CHECKPOINT = "checkpoint"
STATE = "state.pt"
SUMMARY = "training.json"
ARGUMENTS = "arguments.json"
EVAL_BATCH = 128
KS = (1, 5, 10)
# What a resumed run must share with the stopped one: the schedule, the optimizer state and
# the batches all follow from these.
RESUME_SAME = ("model", "train", "epochs", "batch_size", "lr", "val_fraction", "seed",
               "split")


@dataclass
class FinetuneArgs:
    captions: Path
    images: Path
    model: str
    out: Path
    epochs: int = 5
    batch_size: int = 64
    lr: float | None = None  # by --train, from contrastive.DEFAULT_LR
    train: str = "all"
    val_fraction: float = 0.1
    seed: int = 0
    split: str | None = "train"  # Karpathy files: train on their train split
    resume: bool = False
    max_minutes: float | None = None  # stop after the epoch that passes this

    def checked(self) -> FinetuneArgs:
        if self.epochs < 1:
            raise InputError(f"--epochs must be 1 or more, got {self.epochs}")
        if self.batch_size < 2:
            raise InputError(f"--batch-size must be 2 or more (a contrastive batch needs "
                             f"negatives), got {self.batch_size}")
        if self.lr is not None and not 0 < self.lr < 1:
            raise InputError(f"--lr must be between 0 and 1, got {self.lr}")
        if self.train not in contrastive.MODES:
            raise InputError(f"--train must be one of {', '.join(contrastive.MODES)}")
        return self


@dataclass
class Epoch:
    epoch: int
    train_loss: float | None
    seconds: float
    logit_scale: float
    validation: dict | None
    lr: float | None = None


@dataclass
class Run:
    """What training.json holds."""

    arguments: dict
    model_id: str
    from_scratch: bool
    data_hash: str
    train: dict
    validation: dict
    curve: list[dict] = field(default_factory=list)
    best_epoch: int | None = None
    final: dict | None = None
    device: str = "cpu"
    pairs_per_second: float | None = None


def is_size_name(model: str) -> bool:
    """A size name (``tiny``, ``small``, ``vit-b-32``) unless a folder of that name exists."""
    return model in SIZES and not Path(model).exists()


def finetune(args: FinetuneArgs, config: Config,
             say: Callable[[str], None] = print) -> Run:
    """Train; write the best model to ``args.out``; return the run's record."""
    args = args.checked()
    out = Path(args.out)
    state_file = out / CHECKPOINT / STATE
    if state_file.exists() and not args.resume:
        raise InputError(f"{out} holds an unfinished or finished run; pass --resume to go "
                         "on with it, or choose another --out")
    if args.resume and not state_file.exists():
        raise InputError(f"nothing to resume: {state_file} does not exist")
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file; name a folder")
    if out.is_dir() and any(out.iterdir()) and not (out / CHECKPOINT).is_dir():
        raise InputError(f"--out {out} is not empty; choose a new folder (training writes a "
                         "model folder there)")

    from_scratch = is_size_name(args.model)
    lr = args.lr or contrastive.DEFAULT_LR["scratch" if from_scratch else args.train]
    arguments = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(args).items()
                 if k != "resume"} | {"lr": lr}
    _same_settings(out, arguments, args.resume)
    captions = load_caption_set(args.captions, split=args.split)
    paths = captions.paths(args.images)
    encoder = _load(args, out, from_scratch, config)
    model, tokenizer, spec = encoder.model, encoder.tokenizer, encoder.spec
    device = encoder.device

    say(f"Reading {captions.n_images} images and {captions.n_captions} captions ...")
    digest, hashes = data.data_hash(paths, captions)
    cache = out / CHECKPOINT / f"pixels-{digest[:12]}-{data.spec_key(spec)}.npy"
    pixels = data.decode_pixels(paths, hashes, spec, cache,
                                max_pixels=config.indexer.max_image_pixels,
                                draft=config.indexer.jpeg_draft,
                                workers=config.indexer.worker_count())
    pairs = data.Pairs(pixels, captions.captions,
                       np.asarray(captions.caption_image, dtype=np.int64), spec)
    train_rows, val_rows = data.split_by_image(pairs.n_images, args.val_fraction, args.seed)
    train_set, val_set = pairs.subset(train_rows), pairs.subset(val_rows)
    if len(train_set.captions) < args.batch_size:
        raise InputError(
            f"{len(train_set.captions)} training pairs are too few for --batch-size "
            f"{args.batch_size}; lower the batch size or add captioned images")
    say(f"Training on {data.describe(train_set)}; validating on {data.describe(val_set)}.")

    trained = contrastive.prepare_trainable(model, args.train)
    optimizer = contrastive.optimizer_for(trained, lr)
    steps_per_epoch = len(train_set.captions) // args.batch_size
    scheduler = contrastive.warmup_cosine(optimizer, steps_per_epoch * args.epochs)
    use_amp = device == "cuda"
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)

    run = Run(
        arguments=arguments,
        model_id=encoder.model_id if not from_scratch else f"scratch:{args.model}",
        from_scratch=from_scratch, data_hash=digest,
        train={"images": train_set.n_images, "captions": len(train_set.captions)},
        validation={"images": val_set.n_images, "captions": len(val_set.captions)},
        device=device,
    )
    start_epoch, best_score = 1, -math.inf
    if args.resume:
        start_epoch, best_score = _restore(state_file, trained, optimizer, scheduler, scaler,
                                           run, digest)
        say(f"Resuming after epoch {start_epoch - 1}.")
    else:
        validation = _validate(encoder, val_set)
        run.curve.append(asdict(Epoch(0, None, 0.0, float(model.logit_scale.detach().exp()),
                                      validation)))
        say(_epoch_line(run.curve[-1]))
        best_score = _score(validation)
        if validation is not None:
            run.best_epoch, run.final = 0, validation
            _save_model(model, encoder, out)  # epoch 0 is the model to beat

    started = time.monotonic()
    for epoch in range(start_epoch, args.epochs + 1):
        # Seeded by epoch, so a resumed run sees the batches the killed one would have.
        rng = np.random.default_rng([args.seed, epoch])
        t0 = time.perf_counter()
        loss = train_epoch(trained, model, tokenizer, train_set, optimizer, scheduler, scaler,
                            data.epoch_batches(len(train_set.captions), args.batch_size, rng),
                            device, f"epoch {epoch}/{args.epochs}")
        seconds = time.perf_counter() - t0
        validation = _validate(encoder, val_set)
        record = Epoch(epoch, loss, round(seconds, 2), float(model.logit_scale.detach().exp()),
                       validation, lr=float(scheduler.get_last_lr()[0]))
        run.curve.append(asdict(record))
        run.pairs_per_second = round(steps_per_epoch * args.batch_size / seconds, 1)
        say(_epoch_line(run.curve[-1]))
        score = _score(validation)
        if validation is None or score > best_score:
            best_score, run.best_epoch, run.final = score, epoch, validation
            _save_model(contrastive.merged_copy(trained, model), encoder, out)
        _checkpoint(state_file, trained, optimizer, scheduler, scaler, run, epoch, best_score)
        if args.max_minutes is not None and time.monotonic() - started > args.max_minutes * 60:
            say(f"Stopping after epoch {epoch}: --max-minutes {args.max_minutes} has passed.")
            break
    _write_summary(out, run)
    return run


def _same_settings(out: Path, arguments: dict, resume: bool) -> None:
    """A resumed run must be the run that stopped; a new one records what it is."""
    recorded = out / CHECKPOINT / ARGUMENTS
    if not resume:
        recorded.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(recorded) as fh:
            fh.write(json.dumps(arguments, indent=2).encode())
        return
    before = json.loads(recorded.read_text())
    for key in RESUME_SAME:
        if before.get(key) != arguments.get(key):
            flag = "--" + key.replace("_", "-")
            raise InputError(
                f"{flag} {arguments.get(key)} differs from the stopped run's "
                f"{before.get(key)}; --resume goes on with the same settings (to train "
                f"further, start a new --out with --model {out})")


def _load(args: FinetuneArgs, out: Path, from_scratch: bool, config: Config) -> ClipEncoder:
    """The model to train, fp32 on the configured device, through the search loader."""
    source = args.model
    if source == "offline":
        raise InputError("the offline model cannot be trained: it pairs a fixed ImageNet "
                         "classifier with a sentence encoder; pass a CLIP checkpoint or a "
                         f"size name ({', '.join(SIZES)})")
    if from_scratch:
        source = str(out / CHECKPOINT / "initial")
        if not (Path(source) / "config.json").exists():
            build_random_clip(source, size=args.model, seed=args.seed)
    encoder = ClipEncoder(source, device=config.model.device, fp16=False)
    if encoder.model_type != "clip" or not hasattr(encoder.model, "logit_scale"):
        raise InputError(
            f"cannot train '{args.model}': it is a {encoder.model_type} model; finetune "
            "trains CLIP models (a CLIP checkpoint, hub id, or a size name: "
            f"{', '.join(SIZES)})")
    return encoder


def _tokens(tokenizer, texts: list[str], device: str) -> dict:
    tok = tokenizer(texts, padding=True, truncation=True, max_length=77, return_tensors="pt")
    return {"input_ids": tok["input_ids"].to(device),
            "attention_mask": tok["attention_mask"].to(device)}


def train_epoch(trained, model, tokenizer, pairs: data.Pairs, optimizer, scheduler, scaler,
                 batches: list[np.ndarray], device: str, label: str) -> float:
    from tqdm import tqdm

    trained.train()
    total, bar = 0.0, tqdm(batches, desc=label, unit="batch", leave=False,
                            disable=not sys.stderr.isatty())
    for batch in bar:
        owners = pairs.caption_image[batch]
        images = to_model_input(pairs.pixels[owners], pairs.spec, device, torch.float32)
        tokens = _tokens(tokenizer, [pairs.captions[i] for i in batch], device)
        with torch.autocast("cuda", dtype=torch.float16, enabled=device == "cuda"):
            image_emb = ClipEncoder._features(image_forward(model, images))
            text_emb = ClipEncoder._features(model.get_text_features(**tokens))
            loss = contrastive.clip_loss(image_emb, text_emb, model.logit_scale,
                                         torch.from_numpy(owners).to(device))
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.unscale_(optimizer)
        torch.nn.utils.clip_grad_norm_(
            [p for p in trained.parameters() if p.requires_grad], max_norm=1.0)
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        contrastive.clamp_logit_scale(model)
        total += float(loss.detach())
        bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
    return round(total / max(1, len(batches)), 4)


@torch.inference_mode()
def _validate(encoder: ClipEncoder, pairs: data.Pairs) -> dict | None:
    """Validation Recall@K both ways, by the bench's metric code, from the vectors search
    itself would make (``encode_pixels`` / ``encode_texts``); None without a split."""
    if pairs.n_images == 0:
        return None
    encoder.model.eval()
    images = [encoder.encode_pixels(pairs.pixels[np.arange(i, min(i + EVAL_BATCH,
                                                                   pairs.n_images))])
              for i in range(0, pairs.n_images, EVAL_BATCH)]
    texts = [encoder.encode_texts(pairs.captions[i:i + EVAL_BATCH])
             for i in range(0, len(pairs.captions), EVAL_BATCH)]
    return retrieval_metrics(np.concatenate(texts), np.concatenate(images),
                             pairs.caption_image, ks=KS)


def _score(validation: dict | None) -> float:
    """rsum, the sum of R@1/5/10 both ways: the usual Flickr30k / COCO model selection."""
    if validation is None:
        return -math.inf
    return sum(validation[d][f"R@{k}"] for d in ("text_to_image", "image_to_text") for k in KS)


def _epoch_line(record: dict) -> str:
    head = "before training" if record["epoch"] == 0 else f"epoch {record['epoch']}"
    parts = [head]
    if record["train_loss"] is not None:
        parts.append(f"loss {record['train_loss']:.3f}")
    v = record["validation"]
    if v is not None:
        for key, name in (("text_to_image", "text->image"), ("image_to_text", "image->text")):
            parts.append(f"{name} " + " ".join(f"R@{k} {v[key][f'R@{k}'] * 100:.1f}"
                                               for k in KS))
    if record["seconds"]:
        parts.append(f"{record['seconds']:.0f} s")
    return " | ".join(parts)


def _save_model(model, encoder: ClipEncoder, out: Path) -> None:
    """A folder every pixseek command loads: weights, tokenizer, image processor settings."""
    # Written beside, then moved in file by file (each move atomic), so a run killed while
    # saving leaves the previous best epoch's weights whole.
    staging = out / CHECKPOINT / "saving"
    shutil.rmtree(staging, ignore_errors=True)
    model.save_pretrained(staging)
    encoder.tokenizer.save_pretrained(staging)
    (staging / "preprocessor_config.json").write_text(
        json.dumps(encoder.processor_config, indent=2))
    for path in staging.iterdir():
        os.replace(path, out / path.name)
    staging.rmdir()


def _checkpoint(state_file: Path, trained, optimizer, scheduler, scaler, run: Run,
                epoch: int, best_score: float) -> None:
    state = {
        "epoch": epoch, "best_score": best_score, "run": asdict(run),
        "model": trained.state_dict(), "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
    }
    state_file.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(state_file) as fh:
        torch.save(state, fh)


def _restore(state_file: Path, trained, optimizer, scheduler, scaler, run: Run,
             digest: str) -> tuple[int, float]:
    state = torch.load(state_file, map_location="cpu", weights_only=False)
    if state["run"]["data_hash"] != digest:
        raise InputError("the captions or images changed since this run started; --resume "
                         "needs the same data (start a new --out to train on the new data)")
    trained.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    scaler.load_state_dict(state["scaler"])
    for key in ("curve", "best_epoch", "final", "pairs_per_second"):
        setattr(run, key, state["run"][key])
    return state["epoch"] + 1, state["best_score"]


def _write_summary(out: Path, run: Run) -> None:
    with atomic_write(out / SUMMARY) as fh:
        fh.write((json.dumps(asdict(run), indent=2) + "\n").encode())
