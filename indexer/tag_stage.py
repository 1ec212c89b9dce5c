"""A later indexing stage: tags taught by example (``search.tags``) reach new photos.

After the CLIP pass, every tag scores the embeddings newer than the last one it was applied
to (one matrix product per chunk, all tags together), so a photo indexed later carries its
tags; a tag fitted for another model is first refitted from its examples for this one (a
tag with prompts only at the model's calibrated zero-shot scale, as ``classify``).
An index run that added nothing costs one look at each tag.
"""

from __future__ import annotations

import logging
import threading

from search import tags
from search.encoders import Encoder
from search.store import Store

log = logging.getLogger("pixseek.tags")


def apply_tags(store: Store, encoder: Encoder, cancel: threading.Event) -> dict[str, int]:
    """{tag name: members added} for the tags that scored new photos."""
    if cancel.is_set() or not store.all_tags():
        return {}
    from search.calibration import logit_scale

    added = tags.apply_pending(store, encoder.model_id, encoder.encode_texts,
                               lambda: logit_scale(encoder))
    for name, count in added.items():
        log.info("tag %r: %d new members", name, count)
    return added
