"""A model's side of an extended vocabulary: grow its token embeddings, start the new rows, point its image ids.

:meth:`owa.data.episode_tokenizer.EpisodeTokenizer.prepare_model` calls these after adding tokens to a tokenizer.
torch is imported only here, inside the functions, and only when a model is prepared.

* :func:`resize_token_embeddings` grows the input embeddings and, when the model has its own (untied) output
  embeddings, those too; a larger embedding (a padded vocabulary) is kept.
* :func:`initialize_token_rows` sets the rows of new tokens: ``"mean"`` (the mean of the existing rows) or
  ``"semantic"`` (the mean embedding of a few words describing each token), on the input embeddings and, when
  untied, on the output embeddings.
* :func:`set_image_token_ids` writes the layout's token ids into the model's config where it has them
  (``image_token_id``; Qwen2-VL's ``vision_start_token_id``/``vision_end_token_id``) and into the modules that
  copied them at construction.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

__all__ = ["EmbeddingInit", "initialize_token_rows", "resize_token_embeddings", "set_image_token_ids"]

logger = logging.getLogger(__name__)

EmbeddingInit = Literal["mean", "semantic"]
_INITS = ("mean", "semantic")

# Config attributes of a model's image token, and what part of a layout each one is (checked on the tiny Idefics3,
# InternVL and Qwen2-VL models of owa.data.testing.vlms).
_IMAGE_ID_ATTRIBUTES = {"image_token_id": "token", "vision_start_token_id": "prefix", "vision_end_token_id": "suffix"}


def resize_token_embeddings(model: PreTrainedModel, size: int) -> bool:
    """Grow ``model``'s token embeddings (input, and output when untied) to ``size`` rows if they are smaller.

    Returns:
        Whether anything was resized. An embedding already at least ``size`` rows (padded vocabularies, e.g.
        Qwen's 151,936) is left as it is.
    """
    rows = model.get_input_embeddings().weight.shape[0]
    if size <= rows:
        return False
    # transformers resizes the output embeddings too when they are not tied to the input ones, and the config's
    # vocab_size (of the text config, for vision-language models).
    model.resize_token_embeddings(size)
    return True


def initialize_token_rows(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    new_token_ids: Mapping[str, int],
    *,
    init: EmbeddingInit,
    descriptions: Mapping[str, str] | None = None,
) -> int:
    """Set the embedding rows of the tokens in ``new_token_ids`` (token -> id), on both sides of the model.

    ``"mean"``: each new row is the mean of the existing rows (the ids below ``len(tokenizer)`` that are not new;
    rows of a padded vocabulary beyond the tokenizer are never used). ``"semantic"``: each new row is the mean of
    the existing rows of the tokens that ``tokenizer`` splits ``descriptions[token]`` into (``"<KEYBOARD>"`` ->
    ``"keyboard"``); a token without a description, or whose description has no existing token, gets the mean.
    Each side is computed from its own matrix: the output embeddings, when untied, from the output rows.

    Returns:
        The number of rows set from a description (0 for ``"mean"``).

    Raises:
        ValueError: an unknown ``init``, or an id outside the embeddings (resize first).
    """
    import torch

    if init not in _INITS:
        raise ValueError(f"Invalid init ({init!r}). Supported values are {', '.join(map(repr, _INITS))}.")
    if not new_token_ids:
        return 0
    inputs = model.get_input_embeddings().weight
    outputs_module = model.get_output_embeddings()
    outputs = outputs_module.weight if outputs_module is not None else None
    matrices = [inputs] if outputs is None or outputs is inputs else [inputs, outputs]
    rows = min(m.shape[0] for m in matrices)
    new_ids = sorted(set(new_token_ids.values()))
    if new_ids[-1] >= rows:
        raise ValueError(
            f"Invalid token id ({new_ids[-1]}): the embeddings have {rows} rows. Resize the model's embeddings "
            "first (EpisodeTokenizer.prepare_model does)."
        )
    existing = torch.ones(min(len(tokenizer), rows), dtype=torch.bool)
    existing[[i for i in new_ids if i < len(existing)]] = False
    existing_ids = torch.nonzero(existing).flatten()
    if not len(existing_ids):
        raise ValueError("The tokenizer has no tokens besides the new ones; there is nothing to initialize from.")
    described = 0
    with torch.no_grad():
        means = [m[existing_ids].float().mean(dim=0) for m in matrices]
        new_set = set(new_ids)
        for token, token_id in new_token_ids.items():
            source: list[int] = []
            if init == "semantic" and descriptions is not None and token in descriptions:
                ids = tokenizer.encode(descriptions[token], add_special_tokens=False)
                source = [i for i in ids if i not in new_set and i < len(existing)]
            for matrix, mean in zip(matrices, means, strict=True):
                value = matrix[source].float().mean(dim=0) if source else mean
                matrix[token_id] = value.to(matrix.dtype)
            described += bool(source)
    logger.info("Initialized %d new token embedding rows (%s; %d from descriptions)", len(new_ids), init, described)
    return described


def set_image_token_ids(model: PreTrainedModel, token_ids: Mapping[str, int | None]) -> dict[str, int]:
    """Point ``model``'s image-token ids at a layout's tokens, where the model has such ids and they differ.

    Args:
        model: a transformers model.
        token_ids: the ids of the layout's parts: ``"token"`` (the repeated slot token) and, where the prefix or
            suffix is one token, ``"prefix"`` and ``"suffix"`` (None otherwise).

    The config attributes are ``image_token_id`` (Idefics3/SmolVLM, InternVL, Qwen2-VL: the positions the vision
    tower's features go to) and Qwen2-VL's ``vision_start_token_id`` and ``vision_end_token_id``. Only the
    attributes the config already has are set, and only when they differ: a layout made for the model (a preset
    or :meth:`~owa.data.image_layout.ImageLayout.from_processor`) uses the model's own tokens, so nothing changes.
    Modules that copied the config's ``image_token_id`` at construction (Idefics3) get the new value too.

    Returns:
        The attributes changed, name -> new id.
    """
    changed: dict[str, int] = {}
    for config in _configs(model):
        for attribute, part in _IMAGE_ID_ATTRIBUTES.items():
            new = token_ids.get(part)
            old = getattr(config, attribute, None)
            if new is None or not isinstance(old, int) or old == new:
                continue
            setattr(config, attribute, new)
            changed[attribute] = new
    if "image_token_id" in changed:
        for module in model.modules():
            if isinstance(getattr(module, "image_token_id", None), int):
                module.image_token_id = changed["image_token_id"]
    if changed:
        logger.info("Set the model's image token ids to the layout's: %s", changed)
    return changed


def _configs(model: Any) -> Collection[Any]:
    """The model's config and its text config (where a vision-language model keeps a copy of some ids)."""
    config = model.config
    configs = [config]
    text = getattr(config, "get_text_config", None)
    text_config = text() if text is not None else None
    if text_config is not None and text_config is not config:
        configs.append(text_config)
    return configs
