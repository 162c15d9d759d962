"""The real kopf runs against the emulator: discovery, list+watch, patches, status, events."""

from __future__ import annotations

from pathlib import Path

from kopf.testing import KopfRunner

from kubeemu import KubeEmulator
from kubeemu.resources import kopf_peering_crds

OPERATOR = Path(__file__).with_name("kubeemu_trivial_operator.py")


def test_kopf_operator_handles_create_and_update(widgets: KubeEmulator) -> None:
    with KopfRunner(["run", "-A", "--standalone", str(OPERATOR)]) as runner:
        widgets.create(
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "w1"},
                "spec": {"size": 3},
            }
        )
        created = widgets.wait_for_object(
            "widgets", "w1", lambda o: o.get("status", {}).get("phase") == "Running"
        )
        assert created["status"]["progress"] == {"seenSize": 3}
        # kopf keeps its state in an annotation: proves its JSON/merge patches round-trip.
        assert "kopf.zalando.org/last-handled-configuration" in created["metadata"]["annotations"]

        widgets.patch("widgets", "w1", {"spec": {"size": 5}})
        widgets.wait_for_object("widgets", "w1", lambda o: o["status"]["progress"].get("seenSize") == 5)
        event = widgets.wait_for(lambda: widgets.events("default", involved_name="w1"))[0]
        assert (event["reason"], event["message"], event["type"]) == ("Started", "size 3", "Normal")

        # kopf's finalizer holds the object until its delete handler ran, then releases it.
        assert widgets.get("widgets", "w1")["metadata"]["finalizers"] == [
            "kopf.zalando.org/KopfFinalizerMarker"
        ]
        widgets.delete("widgets", "w1")
        widgets.wait_for_deletion("widgets", "w1")
        reasons = {e["reason"] for e in widgets.events("default", involved_name="w1")}
        assert "Deleting" in reasons
    assert runner.exit_code == 0, runner.output
    assert runner.exception is None


def test_kopf_sees_a_crd_installed_after_start(kube: KubeEmulator) -> None:
    with KopfRunner(["run", "-A", "--standalone", str(OPERATOR)]) as runner:
        kube.apply(Path(__file__).with_name("widgets_crd.yaml"))
        kube.create(
            {
                "apiVersion": "example.com/v1",
                "kind": "Widget",
                "metadata": {"name": "late"},
                "spec": {"size": 1},
            }
        )
        kube.wait_for_object(
            "widgets", "late", lambda o: o.get("status", {}).get("phase") == "Running", timeout=15
        )
    assert runner.exit_code == 0, runner.output


def test_kopf_with_peering(widgets: KubeEmulator) -> None:
    # `--peering=NAME` needs kopf's peering CRDs and a KopfPeering object, as on a real cluster.
    widgets.apply(kopf_peering_crds())
    widgets.create({"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "test-peering"}})
    args = ["run", "--namespace=default", "--peering=test-peering", str(OPERATOR)]
    with KopfRunner(args) as runner:
        widgets.create(
            {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}, "spec": {"size": 1}}
        )
        widgets.wait_for_object("widgets", "w", lambda o: o.get("status", {}).get("phase") == "Running")
        peering = widgets.get("kopfpeerings", "test-peering")
        assert peering["status"], "kopf registers itself in the peering object's status"
    assert runner.exit_code == 0, runner.output
