"""The names a model goes by: OpenAI's aliases, the presets, the offline model, hub ids and
folders, and the one id its vectors are tagged with (without loading the model)."""

from __future__ import annotations

# OpenAI's names for its released models, as the original `clip` package spells them.
ALIASES = {
    "ViT-B/32": "openai/clip-vit-base-patch32",
    "ViT-B/16": "openai/clip-vit-base-patch16",
    "ViT-L/14": "openai/clip-vit-large-patch14",
    "ViT-L/14@336px": "openai/clip-vit-large-patch14-336",
}

OFFLINE_NAMES = {"offline"}
# The offline model's vector tag (``search.encoders.offline``): here, where code that only
# names a model finds it without importing torch. Its last part changes with the recipe.
OFFLINE_MODEL_ID = "offline:efficientnet-lite0+all-minilm-l6-v2:t3cg"


def resolve_name(name: str) -> str:
    """A preset (``fast``, ``best``, ``multilingual``) or an OpenAI alias -> its hub id;
    anything else (hub id, folder) unchanged. A folder named like a preset wins."""
    from search.encoders.presets import resolve

    return ALIASES.get(name) or resolve(name)


def canonical_model_id(name: str) -> str:
    """The id vectors are tagged with, without loading the model."""
    from pathlib import Path

    if name in OFFLINE_NAMES or name == OFFLINE_MODEL_ID:
        return OFFLINE_MODEL_ID
    name = resolve_name(name)
    local = Path(name).expanduser()
    return str(local.resolve()) if local.is_dir() else name
