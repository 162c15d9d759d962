"""Checks made before any child exists, each saying what to change: the parallel sizes tile the GPUs,
the global batch splits into micro batches over the data-parallel ranks (Megatron-Bridge: gbs %
(mbs × DP) == 0, DP = GPUs / (TP × PP × CP)), and the packed data's padding (SFTDataPrep
padSeqToMult) is a multiple of what the parallelism needs (Megatron-Bridge packed sequences: 2 × CP
when CP > 1; TP when sequence parallel and TP > 1). Also the chart-wide and per-CR pod placement."""

from __future__ import annotations

from typing import Any

import pytest
from sftrun_objects import DATA, DEFAULTS, cr, prep, render_run

from sft_operator.api.podspec import PodPlacement, Toleration
from sft_operator.api.sftrun import SFTRunSpec
from sft_operator.errors import InvalidSpec
from sft_operator.render import sftrun as render
from sft_operator.render.pods import WorkloadDefaults
from sft_operator.status.rundata import padding_problem, resolve_data


def spec(**overrides: Any) -> SFTRunSpec:
    return render.parse_spec(cr(**overrides))


@pytest.mark.parametrize(
    ("overrides", "needle"),
    [
        ({"parallelism": {"tensorParallelSize": 3}}, "does not divide the 32 GPUs"),
        (
            {
                "parallelism": {"tensorParallelSize": 1, "expertParallelSize": 1},
                "train": {"trainIters": 10, "globalBatchSize": 48},
            },
            "multiple of 32",
        ),
        # unset sizes are the recipe's (TP 8, EP 16), as the trainer resolves them
        ({"train": {"trainIters": 10, "globalBatchSize": 3}}, "data-parallel size 4 (= 32 GPUs / (tensor 8"),
        # ... so one node of 8 GPUs cannot hold the recipe's EP 16: refused here, not in Megatron
        ({"nodes": 1, "parallelism": {}}, "expert (16) × expert tensor (1) = 16 does not divide the 8 GPUs"),
        (
            {
                "parallelism": {"tensorParallelSize": 4, "contextParallelSize": 2},
                "train": {"globalBatchSize": 6},
            },
            "data-parallel size 4 (= 32 GPUs / (tensor 4 × pipeline 1 × context 2))",
        ),
        (
            {"engine": "hf", "gpusPerNode": 0, "nodes": 3, "train": {"globalBatchSize": 4}},
            "multiple of 3",
        ),
    ],
)
def test_sizes_and_batch_are_checked_with_what_to_change(overrides: dict[str, Any], needle: str) -> None:
    with pytest.raises(InvalidSpec) as err:
        spec(**overrides)
    assert needle in err.value.message


def test_valid_batch_for_the_data_parallel_size() -> None:
    ok = spec(parallelism={"tensorParallelSize": 4, "contextParallelSize": 2}, train={"globalBatchSize": 8})
    assert ok.train.global_batch_size == 8


@pytest.mark.parametrize(
    ("parallelism", "need"),
    [
        ({}, 1),
        ({"tensorParallelSize": 1, "contextParallelSize": 2}, 4),
        ({"contextParallelSize": 2}, 16),  # the recipe's TP 8 with sequence parallelism
        ({"tensorParallelSize": 4, "sequenceParallel": True}, 1),  # no CP: nothing to pad
        (
            {
                "tensorParallelSize": 4,
                "contextParallelSize": 4,
                "sequenceParallel": True,
                "expertParallelSize": 1,
            },
            16,
        ),
        (
            {
                "tensorParallelSize": 2,
                "contextParallelSize": 4,
                "sequenceParallel": False,
                "expertParallelSize": 1,
            },
            8,
        ),
        (
            {
                "tensorParallelSize": 8,
                "contextParallelSize": 2,
                "sequenceParallel": True,
                "expertParallelSize": 1,
            },
            16,
        ),
    ],
)
def test_sequence_multiple_the_parallelism_needs(parallelism: dict[str, Any], need: int) -> None:
    assert (
        spec(
            parallelism={"expertParallelSize": 1, **parallelism}, train={"globalBatchSize": 32}
        ).seq_multiple()
        == need
    )


def test_data_padded_too_little_is_refused_naming_pad_seq_to_mult() -> None:
    owner = cr(
        parallelism={"tensorParallelSize": 1, "contextParallelSize": 2, "expertParallelSize": 1},
        train={"globalBatchSize": 16},
    )
    run = render.parse_spec(owner)
    ready = prep("Succeeded", outputs={"outputDir": "s3://b/o", "packSize": 4096, "padSeqToMult": 2})
    data = resolve_data(owner, ready)
    assert data.ready and data.pad_seq_to_mult == 2
    problem = padding_problem(run, data)
    assert problem is not None and "padSeqToMult" in problem and "multiple of 4" in problem
    assert "SFTDataPrep prep" in problem
    enough = prep("Succeeded", outputs={"outputDir": "s3://b/o", "packSize": 4096, "padSeqToMult": 8})
    assert padding_problem(run, resolve_data(owner, enough)) is None
    # an SFTDataPrep from before padSeqToMult existed pads nothing: treated as 1
    old = prep("Succeeded", outputs={"outputDir": "s3://b/o", "packSize": 4096})
    assert padding_problem(run, resolve_data(owner, old)) is not None


def test_placement_merges_chart_defaults_and_the_run() -> None:
    defaults = WorkloadDefaults(
        trainer_image="t:1",
        placement=PodPlacement(
            node_selector={"pool": "h100", "zone": "a"},
            tolerations=[Toleration(key="nvidia.com/gpu", operator="Exists", effect="NoSchedule")],
            pod_annotations={"k8s.v1.cni.cncf.io/networks": "rdma-net"},
            added_capabilities=["IPC_LOCK"],
            scheduler_name="volcano",
        ),
    )
    owner = cr(
        nodeSelector={"zone": "b"},
        podLabels={"team": "ml"},
        hostNetwork=True,
        tolerations=[{"key": "spot", "operator": "Exists"}],
    )
    job = render_run(owner, DATA, defaults).job
    template = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]
    pod = template["spec"]
    assert pod["nodeSelector"] == {"pool": "h100", "zone": "b"}
    assert [t["key"] for t in pod["tolerations"]] == ["spot", "nvidia.com/gpu"]
    assert pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet"
    assert pod["schedulerName"] == "volcano"
    assert template["metadata"]["labels"]["team"] == "ml"
    assert template["metadata"]["annotations"]["k8s.v1.cni.cncf.io/networks"] == "rdma-net"
    security = pod["containers"][0]["securityContext"]
    # IPC_LOCK added back; the rest of the restricted context stays
    assert security["capabilities"] == {"drop": ["ALL"], "add": ["IPC_LOCK"]}
    assert security["allowPrivilegeEscalation"] is False and security["readOnlyRootFilesystem"] is True


def test_operator_labels_win_and_bad_keys_are_refused() -> None:
    job = render_run(cr(podLabels={"app.kubernetes.io/managed-by": "me"}), DATA, DEFAULTS).job
    labels = job["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "sft-operator"
    with pytest.raises(InvalidSpec, match="podLabels"):
        spec(podLabels={"bad key": "x"})
    with pytest.raises(InvalidSpec, match=r"addedCapabilities|added_capabilities|SYS_ADMIN"):
        spec(addedCapabilities=["SYS_ADMIN"])
    with pytest.raises(ValueError, match="SFT_WORKLOAD_POD_DEFAULTS"):
        WorkloadDefaults.from_env({"SFT_WORKLOAD_POD_DEFAULTS": '{"addedCapabilities": ["SYS_ADMIN"]}'})
