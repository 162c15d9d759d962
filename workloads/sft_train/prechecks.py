"""Everything the data, the model and the checkpoint must agree on, checked before the first iteration.

Both engines call :func:`run` once, after they know the model's facts and before they load weights
or build an optimizer (the hf engine) or call ``finetune()`` (the megatron engine), so a run that
cannot train fails in seconds with exit 2 and one sentence, never after minutes of GPU time or with a
raw ``IndexError`` from an embedding lookup. What is checked:

* **every shard of the splits training reads** (train, and valid when validation is on) opens as
  packed Parquet and holds rows: sft-prep never writes an empty shard (``sft_prep.metadata``), so a
  zero-row or unreadable one was cut short or replaced. The valid split is decoded whole (it is read
  only after the last iteration, so a corrupt page there would otherwise cost the whole run); the
  train split's footers are read (the engines read every train row before they train anyway);
* **token ids against the model's vocabulary**: the largest id present (from the Parquet column
  statistics, no data read; from the ids themselves when a writer kept no statistics) and the vocabulary
  size of the tokenizer the data was made with (``metadata.json`` ``tokenizer.vocab_size``) must fit the
  model's embedding rows (``vocab_size``);
* **pack size against the model's context**: a packed sub-sequence can fill a bin, and its
  ``pack_size - 1`` input tokens must fit ``max_position_embeddings`` (engine hf; Megatron-Bridge sizes
  its positions from ``model.seq_length``, which the plan sets to the pack size);
* **peft against the checkpoint's kind**: a LoRA run resumes from LoRA adapters and a full run from
  full weights; ``model.pretrained_checkpoint`` holds full weights, never an adapter alone;
* **the loss mask**: a train split whose mask trains no label at all, or trains all but less than one
  label per sequence (every real chat template leaves at least its role header untrained, so that is
  a template that marks every token, the known Megatron-Bridge pitfall), is refused unless
  ``data.allow_full_loss_mask`` says training on every token is meant. A mask that trains nothing
  is always refused: nothing would be learned.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from sft_common import storage
from sft_train import checkpoint_staging
from sft_train.config import TrainConfig
from sft_train.errors import CheckpointMismatch, DataError, PackSizeMismatch
from sft_train.packed_data import COLUMNS, DataInfo, data_error, data_tokenizer


@dataclass(frozen=True)
class ModelFacts:
    """What the model can take, and where each number was read (named in every message)."""

    source: str
    """The model's config as the user knows it, e.g. ``model.pretrained_checkpoint /m (config.json)``."""
    vocab_size: int | None = None
    """Embedding rows: token ids must be below this. None: not known, not checked."""
    context: int | None = None
    """Positions the model takes (``max_position_embeddings``). None: no fixed limit, not checked."""


@dataclass
class MaskCounts:
    """Counts of the train split's loss mask (``metadata.json`` ``splits.train``, or the shards)."""

    tokens: int = 0
    sequences: int = 0
    trained: int = 0

    @property
    def labels(self) -> int:
        """Labels that exist: every token but the first of each sequence."""
        return max(self.tokens - self.sequences, 0)


@dataclass
class DataFacts:
    """What the shards hold, as far as the checks need it."""

    rows: dict[str, int] = field(default_factory=dict)
    """Split → rows over its shards."""
    max_token_id: int | None = None
    max_token_shard: str | None = None
    mask: MaskCounts | None = None


# --------------------------------------------------------------------------- the one entry point


def run(config: TrainConfig, info: DataInfo, model: ModelFacts) -> DataFacts:
    """Every check of this module, in the order a user would fix them; raises the first problem."""
    splits = ["train"]
    if config.data.use_validation and info.shards.get("valid"):
        splits.append("valid")
    want_mask = mask_counts_from_metadata(info.metadata)
    facts = read_shards(info, splits, count_mask=want_mask is None)
    if want_mask is not None:
        facts.mask = want_mask
    check_vocabulary(info, facts, model)
    check_context(info.pack_size, model)
    check_mask(info, facts.mask or MaskCounts(), config.data.allow_full_loss_mask)
    return facts


# --------------------------------------------------------------------------- shards


def _stats_max(metadata: Any, column: str) -> int | None:
    """The largest value of a list<int> column from the footer's row-group statistics, or None."""
    best: int | None = None
    for g in range(metadata.num_row_groups):
        group = metadata.row_group(g)
        if group.num_rows == 0:
            continue
        for c in range(group.num_columns):
            chunk = group.column(c)
            if chunk.path_in_schema.split(".")[0] != column:
                continue
            stats = chunk.statistics
            if stats is None or not stats.has_min_max:
                return None
            best = int(stats.max) if best is None else max(best, int(stats.max))
    return best


def read_shard(uri: str, decode: bool, count_mask: bool) -> tuple[int, int | None, MaskCounts]:
    """(rows, largest token id, mask counts) of one shard; decodes the data only when asked to or when
    the footer has no statistics. Any unreadable file is a :class:`DataError` naming it."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    counts = MaskCounts()
    with storage.local_path(uri) as path:
        try:
            parquet = pq.ParquetFile(path)
            missing = [c for c in COLUMNS if c not in parquet.schema_arrow.names]
            if missing:
                raise data_error(
                    f"{uri} has no column {', '.join(missing)}: it is not sft-prep's packed Parquet "
                    f"(columns {', '.join(COLUMNS)}); point data.path at an sft-prep output_dir"
                )
            rows = parquet.metadata.num_rows
            max_id = _stats_max(parquet.metadata, "input_ids")
            if rows and (decode or count_mask or max_id is None):
                table = parquet.read(columns=list(COLUMNS))
                ids = pc.list_flatten(table.column("input_ids"))
                top = pc.max(ids).as_py()
                max_id = None if top is None else int(top)
                if count_mask:
                    mask = pc.list_flatten(table.column("loss_mask"))
                    counts.tokens = len(ids)
                    counts.sequences = len(pc.list_flatten(table.column("seq_start_id")))
                    counts.trained = int(np.asarray(mask.to_numpy(zero_copy_only=False), np.int64).sum())
        except DataError:
            raise
        except Exception as exc:  # pyarrow raises several types for a truncated or garbled file
            raise data_error(
                f"{uri} cannot be read as Parquet ({exc}): the file is damaged or was cut short; "
                "re-run sft-prep with force: true to rewrite the data"
            ) from None
    return rows, max_id, counts


def read_shards(info: DataInfo, splits: list[str], count_mask: bool) -> DataFacts:
    facts = DataFacts(mask=MaskCounts() if count_mask else None)
    for split in splits:
        total = 0
        for uri in info.shards.get(split) or []:
            counting = count_mask and split == "train"
            rows, max_id, counts = read_shard(uri, decode=split != "train", count_mask=counting)
            if rows == 0:
                raise data_error(
                    f"{uri} holds no rows: sft-prep never writes an empty shard, so this file was cut "
                    "short or replaced; re-run sft-prep with force: true to rewrite the data"
                )
            total += rows
            if max_id is not None and (facts.max_token_id is None or max_id > facts.max_token_id):
                facts.max_token_id, facts.max_token_shard = max_id, uri
            if facts.mask is not None and split == "train":
                facts.mask.tokens += counts.tokens
                facts.mask.sequences += counts.sequences
                facts.mask.trained += counts.trained
        facts.rows[split] = total
    return facts


# --------------------------------------------------------------------------- vocabulary and context


def check_vocabulary(info: DataInfo, facts: DataFacts, model: ModelFacts) -> None:
    if model.vocab_size is None:
        return
    named, tok_vocab = data_tokenizer(info.metadata)
    name = named or "the data's tokenizer"
    fix = "re-run sft-prep with the model's own tokenizer (tokenizer.model), or train a model made for it"
    if facts.max_token_id is not None and facts.max_token_id >= model.vocab_size:
        raise data_error(
            f"token id {facts.max_token_id} in {facts.max_token_shard} is outside the model's vocabulary "
            f"of {model.vocab_size} tokens (vocab_size of {model.source}; the data was tokenized with "
            f"{name}); {fix}"
        )
    if tok_vocab is not None and tok_vocab > model.vocab_size:
        raise data_error(
            f"the data was tokenized with {name}, a vocabulary of {tok_vocab} tokens (metadata.json), "
            f"but the model has {model.vocab_size} (vocab_size of {model.source}); {fix}"
        )


def check_context(pack_size: int, model: ModelFacts) -> None:
    """A packed sub-sequence can be as long as the pack; the model must take its ``pack_size - 1``
    input positions."""
    limit = model.context
    if limit is not None and limit < pack_size - 1:
        raise PackSizeMismatch(
            f"the base model takes at most {limit} positions (max_position_embeddings of {model.source}) "
            f"but the data was packed into bins of {pack_size} tokens; re-run sft-prep with "
            f"pack_size <= {limit + 1} or use a model with a longer context"
        )


# --------------------------------------------------------------------------- loss mask


def mask_counts_from_metadata(metadata: Mapping[str, Any]) -> MaskCounts | None:
    """The train split's counts as sft-prep recorded them, or None when it did not."""
    splits = metadata.get("splits")
    train = splits.get("train") if isinstance(splits, Mapping) else None
    if not isinstance(train, Mapping):
        return None
    values = [train.get(k) for k in ("tokens", "sequences", "trainable_tokens")]
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        return None
    tokens, sequences, trained = (int(v) for v in values)  # type: ignore[arg-type]
    return MaskCounts(tokens=tokens, sequences=sequences, trained=trained)


def check_mask(info: DataInfo, counts: MaskCounts, allow_full: bool) -> None:
    where = storage.join(info.root, "splits", "train")
    labels = counts.labels
    if labels == 0:
        return  # nothing to judge (no sequence longer than one token): the engines report empty data
    share = counts.trained / labels
    if counts.trained == 0:
        raise data_error(
            f"the loss mask of {where} trains no token (0 of {labels} labels): the chat template marked "
            "no assistant turn or the chats hold no assistant message, so nothing would be learned; check "
            "the template's assistant turns (sftctl preview shows the mask) and re-run sft-prep"
        )
    untrained = labels - counts.trained
    if untrained < counts.sequences and not allow_full:
        raise data_error(
            f"the loss mask of {where} trains {share:.1%} of the labels ({counts.trained} of {labels}; "
            f"{untrained} untrained over {counts.sequences} sequences, fewer than each role header "
            "leaves): the chat template marks every token, prompts included; fix its assistant turns and "
            "re-run sft-prep, or set data.allow_full_loss_mask: true if training on every token is meant"
        )


# --------------------------------------------------------------------------- model facts per engine


def _int(config: Mapping[str, Any], *keys: str) -> int | None:
    """The first integer among ``keys``, looking into ``text_config`` (multimodal models) too."""
    text = config.get("text_config")
    for scope in (config, text if isinstance(text, Mapping) else {}):
        for key in keys:
            value = scope.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                return value
    return None


def hf_model(config: TrainConfig, resume: str | None) -> ModelFacts:
    """The hf engine's model facts from the ``config.json`` it will load (read alone, before any
    weights), and the checkpoint kinds against ``peft``. A checkpoint that is absent is left to the
    engine, which names it."""
    pretrained = config.model.pretrained_checkpoint
    lora = config.peft is not None
    if pretrained and storage.read_json_object(storage.join(pretrained, "config.json")) is None:
        adapter = storage.read_json_object(storage.join(pretrained, "adapter_config.json"))
        if adapter is not None:
            base = adapter.get("base_model_name_or_path") or "the model it was trained on"
            raise CheckpointMismatch(
                f"model.pretrained_checkpoint {pretrained} is a LoRA adapter (adapter_config.json, no "
                f"config.json), not full weights; point it at the base model ({base}) and, to continue "
                "that adapter, at the run's checkpoint with checkpoint.load"
            )
    if resume is not None:
        has_adapter = storage.exists(storage.join(resume, "adapter", "adapter_config.json"))
        has_model = storage.exists(storage.join(resume, "model", "config.json"))
        if lora and not has_adapter and has_model:
            raise CheckpointMismatch(
                f"peft is LoRA but the checkpoint to resume, {resume}, holds full weights (model/, no "
                "adapter/): it was written by a full-SFT run; unset peft to continue it, or give this "
                "LoRA run another checkpoint.save"
            )
        if not lora and has_adapter and not has_model:
            raise CheckpointMismatch(
                f"peft is unset (full SFT) but the checkpoint to resume, {resume}, holds LoRA adapters "
                "(adapter/, no model/): it was written by a LoRA run; set peft: lora to continue it, or "
                "give this full run another checkpoint.save"
            )
    source_dir = storage.join(resume, "model") if resume is not None and not lora else pretrained
    if not source_dir:
        return ModelFacts(source="the model")
    what = "checkpoint" if source_dir != pretrained else "model.pretrained_checkpoint"
    model_config = storage.read_json_object(storage.join(source_dir, "config.json"))
    source = f"{what} {source_dir} (config.json)"
    if model_config is None:
        return ModelFacts(source=source)
    return ModelFacts(
        source=source,
        vocab_size=_int(model_config, "vocab_size"),
        context=_int(model_config, "max_position_embeddings", "n_positions"),
    )


def _megatron_peft(checkpoint: str) -> bool | None:
    """Whether the newest iteration of a Megatron-Bridge checkpoint location was a PEFT run, from its
    ``iter_N/run_config.yaml`` (Megatron-Bridge writes the whole ConfigContainer there, ``peft: null`` for
    full SFT); None when that cannot be read."""
    import yaml

    run_config = storage.join(checkpoint, "run_config.yaml")  # checkpoint.load may name one iteration
    if not storage.exists(run_config):
        iteration = checkpoint_staging.latest_iteration(checkpoint)
        if iteration is None:
            return None
        run_config = storage.join(checkpoint, checkpoint_staging.iteration_dir(iteration), "run_config.yaml")
        if not storage.exists(run_config):
            return None
    try:
        loaded = yaml.safe_load(storage.read_text(run_config))
    except (yaml.YAMLError, UnicodeDecodeError):
        return None
    if not isinstance(loaded, dict) or "peft" not in loaded:
        return None
    return loaded["peft"] is not None


def megatron_model(config: TrainConfig, container: Any, resume: str | None) -> ModelFacts:
    """The megatron engine's model facts from the built ``ConfigContainer`` (its model provider's
    ``vocab_size``, the unpadded vocabulary the recipe took from the model's Hugging Face config), and
    the resume checkpoint's kind against ``peft``. No context limit: Megatron-Bridge sizes its position
    handling from ``model.seq_length``, which the plan sets to the pack size."""
    pretrained = config.model.pretrained_checkpoint
    if pretrained and _megatron_peft(pretrained):
        raise CheckpointMismatch(
            f"model.pretrained_checkpoint {pretrained} was written by a LoRA run (run_config.yaml peft): "
            "it holds adapters, not full weights; point it at the base model's Megatron checkpoint and, "
            "to continue that LoRA run, at its checkpoint with checkpoint.load"
        )
    if resume is not None:
        was_peft = _megatron_peft(resume)
        lora = config.peft is not None
        if was_peft is not None and was_peft != lora:
            kinds = ("LoRA", "full-SFT") if lora else ("full SFT", "LoRA")
            raise CheckpointMismatch(
                f"this run is {kinds[0]} but the checkpoint to resume, {resume}, was written by a "
                f"{kinds[1]} run (run_config.yaml peft); set peft to match it, or give this run another "
                "checkpoint.save"
            )
    provider = getattr(container, "model", None)
    vocab = getattr(provider, "vocab_size", None)
    recipe = config.model.recipe
    return ModelFacts(
        source=f"the recipe {recipe}'s model",
        vocab_size=vocab if isinstance(vocab, int) and not isinstance(vocab, bool) else None,
    )
