"""Kubernetes Events on a custom resource (core/v1, what ``kubectl describe`` shows).

Posted idempotently: an Event's name is derived from (CR uid, generation, reason), so one reason is
announced once per generation however often the reconcile that announces it runs (a retry after a
lost status-patch response, two replicas during a rollout): the second POST answers 409, which means
"already posted". The reconcile posts a transition's Events *before* it patches the status that
records the transition, so a lost patch response never loses them; an Event the API server failed to
take (5xx, 429) waits in the client's outbox and is posted again by the CR's next reconcile
(:func:`flush_events`), so the status never waits for Events either.
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


def event_body(
    obj: Mapping[str, Any], type_: str, reason: str, message: str, now: str, occurrence: str = ""
) -> dict[str, Any]:
    """A core/v1 Event on ``obj``; its name hashes uid, generation and reason (see the module
    docstring), and ``occurrence`` for a reason that may rightly recur within one generation (each
    restart of a hung run). The message is redacted (``sft_common.redact``): it often quotes a pod's
    termination message."""
    meta = obj["metadata"]
    message = redact(message)
    key = f"{meta.get('uid')}/{meta.get('generation')}/{reason}" + (f"/{occurrence}" if occurrence else "")
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
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


OUTBOX_PER_OBJECT = 20
OUTBOX_OBJECTS = 1000


async def record_event(
    client: KubeClient,
    obj: Mapping[str, Any],
    type_: str,
    reason: str,
    message: str,
    now: str,
    occurrence: str = "",
) -> None:
    """Post an Event (409: already posted). A transient failure (unreachable, 429, 5xx) keeps it in
    the client's outbox for :func:`flush_events` (the status is not held back by Events); any other
    refusal (e.g. no RBAC for events) is logged and skipped."""
    await _post(client, event_body(obj, type_, reason, message, now, occurrence))


async def _post(client: KubeClient, body: dict[str, Any]) -> None:
    uid = str(body["involvedObject"].get("uid"))
    try:
        await client.create(EVENTS, body["metadata"]["namespace"], body)
    except ApiError as exc:
        if exc.transient:
            if uid not in client.unposted_events and len(client.unposted_events) >= OUTBOX_OBJECTS:
                client.unposted_events.pop(next(iter(client.unposted_events)))
            pending = client.unposted_events.setdefault(uid, ([], exc))[0]
            client.unposted_events[uid] = (pending, exc)
            if body not in pending:
                pending.append(body)
                del pending[:-OUTBOX_PER_OBJECT]
            log.info(
                "event %s on %s kept to post again: %s", body["reason"], body["involvedObject"]["name"], exc
            )
        elif not exc.conflict:
            log.warning(
                "could not record event %s on %s: %s", body["reason"], body["involvedObject"]["name"], exc
            )


async def flush_events(client: KubeClient, uid: str) -> ApiError | None:
    """Post again the Events of ``uid`` a transient error kept back; the last error while some remain
    (the caller raises it, so the work queue retries with backoff)."""
    kept = client.unposted_events.pop(uid, None)
    if kept is None:
        return None
    for body in kept[0]:
        await _post(client, body)
    remaining = client.unposted_events.get(uid)
    return remaining[1] if remaining else None
