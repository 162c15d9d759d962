"""Kubernetes Events on a custom resource (core/v1, what ``kubectl describe`` shows)."""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping
from typing import Any

from sft_common.redact import redact
from sft_operator.kube.client import EVENTS, ApiError, KubeClient

log = logging.getLogger(__name__)
COMPONENT = "sft-operator"


def event_body(obj: Mapping[str, Any], type_: str, reason: str, message: str, now: str) -> dict[str, Any]:
    """A core/v1 Event on ``obj``; its name hashes uid, reason, message and time, so posting the same
    event twice (a retried reconcile) answers 409 instead of showing it twice. The message is redacted
    (``sft_common.redact``): it often quotes a pod's termination message."""
    meta = obj["metadata"]
    message = redact(message)
    digest = hashlib.sha256(f"{meta.get('uid')}/{reason}/{message}/{now}".encode()).hexdigest()[:12]
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name'][:200]}.{digest}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "type": type_,
        "reason": reason,
        "message": message[:1024],
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


async def record_event(
    client: KubeClient, obj: Mapping[str, Any], type_: str, reason: str, message: str, now: str
) -> None:
    """Post an Event; failures are logged, never raised (events are best-effort by design)."""
    body = event_body(obj, type_, reason, message, now)
    try:
        await client.create(EVENTS, body["metadata"]["namespace"], body)
    except ApiError as exc:
        if not exc.conflict:
            log.warning("could not record event %s on %s: %s", reason, obj["metadata"]["name"], exc)
