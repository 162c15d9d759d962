"""What the emulated controllers share: resource keys, condition bookkeeping, child-object helpers."""

from __future__ import annotations

import contextlib
import copy
import time
from datetime import UTC, datetime
from typing import Any

from .errors import ApiError
from .store import Json, Store, now_iso

JOB_KEY = ("batch", "jobs")
PTJ_KEY = ("kubeflow.org", "pytorchjobs")
POD_KEY = ("", "pods")
EVENT_KEY = ("", "events")


def parse_time(value: str | None) -> float | None:
    if not value:
        return None
    return datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()


def set_condition(
    conditions: list[Json],
    type_: str,
    status: str,
    reason: str,
    message: str,
    stamp: str | None = "lastUpdateTime",
) -> bool:
    """Upsert a condition; ``lastTransitionTime`` changes only when ``status`` does. True if changed.

    ``stamp`` names the kind's "last updated" field: ``lastUpdateTime`` for Kubeflow job conditions,
    ``lastProbeTime`` for Job conditions, None for Pod conditions (their schemas differ).
    """
    now = now_iso()
    for condition in conditions:
        if condition["type"] == type_:
            if (condition["status"], condition.get("reason"), condition.get("message")) == (
                status,
                reason,
                message,
            ):
                return False
            if condition["status"] != status:
                condition["lastTransitionTime"] = now
            condition.update({"status": status, "reason": reason, "message": message})
            if stamp:
                condition[stamp] = now
            return True
    condition = {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": now,
    }
    if stamp:
        condition[stamp] = now
    conditions.append(condition)
    return True


def condition_true(status: Json, type_: str) -> bool:
    return any(c.get("type") == type_ and c.get("status") == "True" for c in status.get("conditions") or [])


class ControllerBase:
    """Helpers over the store for controllers that own pods (all run on the emulator loop)."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def pods_of(self, owner: Json) -> list[Json]:
        uid = owner["metadata"]["uid"]
        pods = self.store.list(self.store.resources[POD_KEY], owner["metadata"]["namespace"])
        return [
            p
            for p in pods
            if any(ref.get("uid") == uid for ref in p["metadata"].get("ownerReferences") or [])
        ]

    def write_status(self, key: tuple[str, str], obj: Json, status: Json) -> None:
        if status == obj.get("status"):
            return
        body = copy.deepcopy(obj)
        body["status"] = status
        meta = obj["metadata"]
        self.store.replace(self.store.resources[key], meta.get("namespace"), meta["name"], body, "status")

    def delete_pod(self, pod: Json) -> None:
        with contextlib.suppress(ApiError):
            self.store.delete(
                self.store.resources[POD_KEY], pod["metadata"]["namespace"], pod["metadata"]["name"]
            )

    def event(self, obj: Json, type_: str, reason: str, message: str, component: str = "kubeemu") -> None:
        """Record a core/v1 Event about ``obj``, as a controller's event recorder does."""
        meta = obj["metadata"]
        body: Json = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"generateName": f"{meta['name']}.", "namespace": meta.get("namespace") or "default"},
            "involvedObject": {
                "apiVersion": obj["apiVersion"],
                "kind": obj["kind"],
                "name": meta["name"],
                "namespace": meta.get("namespace") or "",
                "uid": meta["uid"],
            },
            "type": type_,
            "reason": reason,
            "message": message,
            "source": {"component": component},
            "firstTimestamp": now_iso(),
            "lastTimestamp": now_iso(),
            "count": 1,
        }
        with contextlib.suppress(ApiError):
            self.store.create(self.store.resources[EVENT_KEY], body["metadata"]["namespace"], body)

    @staticmethod
    def owner_ref(owner: Json) -> Json:
        return {
            "apiVersion": owner["apiVersion"],
            "kind": owner["kind"],
            "name": owner["metadata"]["name"],
            "uid": owner["metadata"]["uid"],
            "controller": True,
            "blockOwnerDeletion": True,
        }

    @staticmethod
    def phase(pod: Json) -> str:
        return (pod.get("status") or {}).get("phase", "Pending")

    @staticmethod
    def restarts(pod: Json) -> int:
        return sum(
            int(c.get("restartCount", 0)) for c in (pod.get("status") or {}).get("containerStatuses") or []
        )

    def maybe_expire(self, key: tuple[str, str], obj: Json, finished_at: str | None, ttl: Any) -> None:
        finished = parse_time(finished_at)
        if ttl is not None and finished is not None and time.time() >= finished + float(ttl):
            meta = obj["metadata"]
            with contextlib.suppress(ApiError):
                self.store.delete(self.store.resources[key], meta["namespace"], meta["name"], "Background")
