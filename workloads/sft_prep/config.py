"""The data-prep config: the reference recipe's key names, and the workload part of ``SFTDataPrep``.

Imports only pydantic: the operator imports this model to build its CRD.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from sft_common.config import ConfigModel

Algorithm = Literal["best_fit_decreasing", "first_fit_decreasing", "first_fit_shuffle"]
Compression = Literal["zstd", "snappy", "gzip", "lz4", "none"]


def padded_limit(pack_size: int, mult: int) -> int:
    """The longest sequence that still fits a bin of ``pack_size`` once padded to ``mult``: stored as
    ``ceil(n / mult) * mult + 1`` tokens (see :mod:`sft_prep.padding`)."""
    return pack_size if mult == 1 else (pack_size - 1) // mult * mult


class DatasetSpec(ConfigModel):
    """One input dataset of OpenAI-format chat rows."""

    name: str = Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
    """Short name used in statistics and receipts."""
    path: str = Field(min_length=1)
    """Local path or glob, file://, s3://bucket/prefix (glob allowed), or hf://org/name."""
    weight: float = Field(default=1.0, gt=0)
    """Relative weight of this dataset in blend.json."""
    split: str = "train"
    """Split of a hub dataset to read (hf:// only); where the rows go is output_split."""
    output_split: Literal["train", "valid", "test"] | None = None
    """Put every row of this dataset into this output split (e.g. valid: a validation set of its own,
    however small); unset: the dataset's shards are drawn into valid/test by valid_ratio/test_ratio."""
    subset: str | None = None
    """Subset (configuration) of a hub dataset (hf:// only)."""
    messages_field: str = "messages"
    """Column holding the list of chat messages."""
    tools_field: str = "tools"
    """Column holding the row-level tool definitions (optional per row)."""


class TokenizerSpec(ConfigModel):
    """Which tokenizer turns rendered chat text into token ids."""

    model: str = Field(min_length=1)
    """Local directory or tokenizer.json, s3:// prefix, or a Hugging Face hub id."""
    revision: str | None = None
    """Hub revision (branch, tag or commit) when model is a hub id."""


class WandbSpec(ConfigModel):
    """Optional Weights & Biases artifact logging (credentials from WANDB_API_KEY, never the spec)."""

    project: str | None = None
    """W&B project; logging is off when unset."""
    entity: str | None = None
    """W&B entity (team or user)."""
    artifact_name: str = "sft-data"
    """Name of the SFTDataArtifact to log."""


class PrepConfig(ConfigModel):
    """OpenAI chat datasets → chat template → tokens → loss mask → packed Parquet splits."""

    datasets: list[DatasetSpec] = Field(default_factory=list)
    """Input datasets. Either this or blend_path must be given."""
    blend_path: str | None = None
    """Path or URI of a JSON file {"datasets": [...]} used instead of datasets."""
    tokenizer: TokenizerSpec
    """The tokenizer; must be the one the model was trained with."""
    chat_template: str = "nano3"
    """'nano3' (built-in Nemotron 3 format), 'tokenizer' (the tokenizer's own), or a .jinja path/URI."""
    pack_size: int = Field(default=4096, ge=16, le=1_048_576)
    """Tokens per packed bin (the training sequence length)."""
    max_doc_tokens: int | None = Field(default=None, ge=2)
    """Truncate each sequence to this many tokens (head kept); default: pack_size."""
    pad_seq_to_mult: int = Field(default=1, ge=1, le=65_536)
    """Pad every sequence with the tokenizer's eos token (loss mask 0) so that its input tokens (all but
    the last, which is only a label) are a multiple of this, as Megatron-Bridge's packed collate expects
    for context parallelism: 2*CP, or lcm(2*CP, CP*TP) with sequence parallelism. 1: no padding."""
    algorithm: Algorithm = "best_fit_decreasing"
    """Bin-packing algorithm."""
    seed: int = 42
    """Seed for every shuffle (first_fit_shuffle, shard order)."""
    num_shards: int = Field(default=8, ge=1, le=100_000)
    """Number of output shards; the unit of parallelism, resumption and memory."""
    valid_ratio: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of shards for the validation split (whole shards; needs more than 2 shards)."""
    test_ratio: float = Field(default=0.0, ge=0, lt=1)
    """Fraction of shards for the test split (whole shards; needs more than 2 shards)."""
    parquet_row_group_size: int = Field(default=1000, ge=1)
    """Packed bins per Parquet row group."""
    parquet_compression: Compression = "zstd"
    """Parquet compression codec."""
    output_dir: str = Field(min_length=1)
    """Local path, PVC mount path or s3:// URI for splits/, blend.json and metadata.json."""
    sample: int | None = Field(default=None, ge=1)
    """Read at most this many rows per dataset (for quick tests)."""
    max_row_bytes: int = Field(default=8 * 2**20, ge=1024)
    """Rows larger than this are counted as ``row_too_large`` and dropped (default 8 MiB): a JSONL line
    by its length, never parsed; a Parquet or hub row by the UTF-8 bytes of its strings. Text in a
    kept row costs a small multiple of its size in memory (long texts are encoded in windows)."""
    force: bool = False
    """Ignore receipts of an earlier run and redo every shard."""
    wandb: WandbSpec = Field(default_factory=WandbSpec)
    """Optional W&B artifact logging."""

    @model_validator(mode="after")
    def _check(self) -> PrepConfig:
        if not self.datasets and not self.blend_path:
            raise ValueError("give 'datasets' (a list of {name, path}) or 'blend_path'")
        if self.datasets and self.blend_path:
            raise ValueError("give either 'datasets' or 'blend_path', not both")
        names = [d.name for d in self.datasets]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"dataset names must be unique; repeated: {', '.join(dupes)}")
        if self.datasets and all(d.output_split in ("valid", "test") for d in self.datasets):
            raise ValueError(
                "datasets: every dataset has output_split valid or test, so nothing is left to train on; "
                "leave output_split unset (or train) on the training datasets"
            )
        if self.valid_ratio + self.test_ratio >= 1:
            raise ValueError("valid_ratio + test_ratio must leave shards for train (sum < 1)")
        if self.max_doc_tokens is not None and self.max_doc_tokens > self.pack_size:
            raise ValueError(
                f"max_doc_tokens ({self.max_doc_tokens}) cannot exceed pack_size ({self.pack_size}): "
                "a sequence longer than a bin cannot be packed"
            )
        mult = self.pad_seq_to_mult
        if mult > 1:
            if mult >= self.pack_size or self.pack_size % mult:
                raise ValueError(
                    f"pack_size ({self.pack_size}) must be a multiple of pad_seq_to_mult ({mult}), "
                    "and larger: the trainer's sequence length is the pack size, and context/sequence "
                    "parallelism needs it divisible by the same multiple"
                )
            if self.max_doc_tokens is not None and self.max_doc_tokens > self.padded_limit:
                raise ValueError(
                    f"max_doc_tokens ({self.max_doc_tokens}) leaves no room in a bin of {self.pack_size} "
                    f"for padding to a multiple of {mult}; at most {self.padded_limit}"
                )
        return self

    @property
    def padded_limit(self) -> int:
        return padded_limit(self.pack_size, self.pad_seq_to_mult)

    @property
    def doc_limit(self) -> int:
        return min(self.max_doc_tokens or self.pack_size, self.padded_limit)
