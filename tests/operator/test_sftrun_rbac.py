"""manifests/rbac.yaml covers every request the operator makes for an SFTRun (waiting on a prep, the
PyTorchJob lifecycle, suspend, a failed replica's log), and the pytorchjobs rule is exercised."""

from __future__ import annotations

from rbac_rules import allowed, assert_least_privilege, cluster_role
from test_sftrun_operator import master_pod, operator, prep, ptj_conditions, run, wait_status

from kubeemu import KubeEmulator


def test_sftrun_requests_are_within_the_operator_role(cluster: KubeEmulator) -> None:
    kube = cluster
    kube.install_pytorchjob_crd()
    with operator():
        kube.create(run())  # waits for the prep: reads SFTDataPreps from the watch
        kube.create(prep())
        wait_status(kube, lambda s: s.get("phase") == "Waiting")
        kube.patch("SFTRun", "run", {"spec": {"data": {"dataPrepRef": None, "uri": "s3://bucket/prep"}}})
        job = kube.wait_for_object("PyTorchJob", "run-train", timeout=15)
        kube.patch("SFTRun", "run", {"spec": {"suspend": True}})
        kube.wait_for_object(
            "PyTorchJob", "run-train", lambda j: j["spec"]["runPolicy"]["suspend"], timeout=15
        )
        master_pod(kube, job, "Failed", {"exitCode": 1, "reason": "Error"})  # no message: log is fetched
        kube.patch_status("PyTorchJob", "run-train", {"conditions": ptj_conditions("Created", "Failed")})
        wait_status(kube, lambda s: s.get("phase") == "Failed")
    assert_least_privilege(
        kube.requests,
        [
            ("create", "kubeflow.org", "pytorchjobs"),
            ("patch", "kubeflow.org", "pytorchjobs"),
            ("watch", "kubeflow.org", "pytorchjobs"),
            ("list", "kubeflow.org", "pytorchjobs"),
            ("patch", "sft.dev", "sftruns/status"),
            ("watch", "sft.dev", "sftruns"),
            ("watch", "sft.dev", "sftdatapreps"),
            ("get", "", "pods/log"),
        ],
    )
    # "get" on pytorchjobs is granted for the create-after-409 path (kube.children.ensure_child)
    assert allowed(("get", "kubeflow.org", "pytorchjobs"), cluster_role("sft-operator"))
