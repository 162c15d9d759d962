"""Kubernetes Events on a custom resource (core/v1, what ``kubectl describe`` shows).

Posted idempotently: an Event's name is derived from (CR uid, generation, reason), so one reason is
announced once per generation however often the reconcile that announces it runs (a retry after a
lost status-patch response, two replicas during a rollout): the second POST answers 409, which means
"already posted". The reconcile posts a transition's Events *before* it patches the status that
records the transition, so a lost patch response never loses them.
"""

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
    """A core/v1 Event on ``obj``; its name hashes uid, generation and reason (see the module
    docstring). The message is redacted (``sft_common.redact``): it often quotes a pod's termination
    message."""
    meta = obj["metadata"]
    message = redact(message)
    digest = hashlib.sha256(f"{meta.get('uid')}/{meta.get('generation')}/{reason}".encode()).hexdigest()[:12]
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
    """Post an Event (409: already posted). A transient failure (unreachable, 429, 5xx) is raised, so
    the reconcile is retried before its status records the transition; any other refusal (e.g. no
    RBAC for events) is logged and skipped."""
    body = event_body(obj, type_, reason, message, now)
    try:
        await client.create(EVENTS, body["metadata"]["namespace"], body)
    except ApiError as exc:
        if exc.transient:
            raise
        if not exc.conflict:
            log.warning("could not record event %s on %s: %s", reason, obj["metadata"]["name"], exc)
