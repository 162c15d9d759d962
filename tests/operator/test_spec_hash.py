"""The spec hash stamped on children survives an operator upgrade that adds defaulted fields.

A child records the hash of the data/training-defining spec it was rendered from; a different hash later
reads as ``SpecChangedAfterStart``. An operator release that adds a field with a default (this one added
``checkpoint.resume``, ``data.allowFullLossMask``, ``datasets[].outputSplit``) must not change the hash of
a spec that does not set the field, or every running CR would stall on upgrade.
"""

from __future__ import annotations

from sft_common.config import ConfigModel
from sft_operator.api.sftrun import SFTRunSpec, training_fields
from sft_operator.render.children import spec_hash
from sft_operator.render.sftrun import training_spec_hash


class CheckpointV1(ConfigModel):
    save: str | None = None


class CheckpointV2(CheckpointV1):
    resume: str = "auto"


class SpecV1(ConfigModel):
    lr: float = 1e-5
    checkpoint: CheckpointV1 = CheckpointV1()


class SpecV2(ConfigModel):
    lr: float = 1e-5
    checkpoint: CheckpointV2 = CheckpointV2()
    hang_timeout: str = "30m"


def test_a_new_defaulted_field_leaves_the_hash_unchanged_at_any_depth() -> None:
    old = spec_hash(
        SpecV1.model_validate({"lr": 2e-5, "checkpoint": {"save": "s3://b/ck"}}), ("lr", "checkpoint")
    )
    new = spec_hash(
        SpecV2.model_validate({"lr": 2e-5, "checkpoint": {"save": "s3://b/ck"}}),
        ("lr", "checkpoint", "hangTimeout"),
    )
    assert old == new


def test_setting_a_new_field_away_from_its_default_changes_the_hash() -> None:
    fields = ("lr", "checkpoint")
    base = spec_hash(SpecV2.model_validate({"checkpoint": {"save": "s3://b/ck"}}), fields)
    changed = spec_hash(
        SpecV2.model_validate({"checkpoint": {"save": "s3://b/ck", "resume": "never"}}), fields
    )
    assert base != changed


def test_the_training_hash_follows_a_training_field_and_ignores_one_set_to_its_default() -> None:
    spec = {
        "model": {"pretrainedCheckpoint": "s3://b/base"},
        "data": {"uri": "s3://b/data"},
        "checkpoint": {"save": "s3://b/ck"},
        "gpusPerNode": 0,
        "engine": "hf",
    }
    base = training_spec_hash(SFTRunSpec.model_validate(spec))
    explicit_default = training_spec_hash(
        SFTRunSpec.model_validate({**spec, "checkpoint": {"save": "s3://b/ck", "resume": "auto"}})
    )
    other = training_spec_hash(
        SFTRunSpec.model_validate({**spec, "checkpoint": {"save": "s3://b/ck", "resume": "never"}})
    )
    assert base == explicit_default != other
    assert "checkpoint" in training_fields()


# Hashes the operator computed before gpusPerNode's default depended on the engine (one default, 8, so
# the API server's old CRD stored gpusPerNode: 8 in every CR that left it out): computed with that
# release's code (render.sftrun.training_spec_hash at commit 19e01f3) for these specs. The megatron
# specs set sizes that fit their GPUs (unset sizes are the recipe's, TP 8 × EP 16, which 8 GPUs
# cannot hold: such a spec is refused).
MEGATRON_SIZES = {
    None: {"tensorParallelSize": 8, "expertParallelSize": 8},
    8: {"tensorParallelSize": 8, "expertParallelSize": 8},
    4: {"tensorParallelSize": 4, "expertParallelSize": 4},
}
HASHES_BEFORE_ENGINE_DEFAULT = {
    (None, None): "c99c3c5bb9b999a0",
    ("megatron", 8): "c99c3c5bb9b999a0",
    ("megatron", 4): "9049732f9686d43a",
    ("hf", 8): "4c177bbc5160b9fa",  # an hf CR that left it out, as the old CRD stored it
    ("hf", 0): "4e6fa714ef8e03c0",
}


def test_the_engine_dependent_gpus_default_leaves_running_crs_hashes_unchanged() -> None:
    """gpusPerNode now defaults to 8 for megatron and 0 for hf (issue 21); a CR stored by the old CRD
    (8 written in) or one leaving the field out must keep the hash its child was stamped with."""
    base = {
        "model": {"pretrainedCheckpoint": "s3://b/base"},
        "data": {"uri": "s3://b/data"},
        "checkpoint": {"save": "s3://b/ck"},
        "train": {"globalBatchSize": 32},
    }
    for (engine, gpus), before in HASHES_BEFORE_ENGINE_DEFAULT.items():
        spec = {
            **base,
            **({"engine": engine} if engine else {}),
            **({"gpusPerNode": gpus} if gpus is not None else {}),
            **({"parallelism": MEGATRON_SIZES[gpus]} if engine != "hf" else {}),
        }
        assert training_spec_hash(SFTRunSpec.model_validate(spec)) == before, (engine, gpus)
    # an hf CR created with the new CRD leaving it out: read as 0 now, hashed as the old CRD stored it
    hf_unset = SFTRunSpec.model_validate({**base, "engine": "hf"})
    assert hf_unset.gpus() == 0
    assert training_spec_hash(hf_unset) == HASHES_BEFORE_ENGINE_DEFAULT[("hf", 8)]
