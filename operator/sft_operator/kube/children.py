"""Create-or-adopt for children: a 409 on create means "already there", then check it is ours.

Used for every child of every kind (ConfigMap, Job, PyTorchJob): the operator never creates a child
twice (deterministic names), never adopts an object another owner controls, and reports an object
rendered from an older spec instead of silently running stale work.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sft_operator.errors import InvalidSpec
from sft_operator.kube.client import ApiError, KubeClient, Resource
from sft_operator.render.meta import SPEC_HASH_ANNOTATION, is_controlled_by


@dataclass(frozen=True)
class Ensured:
    obj: dict[str, Any]
    created: bool


async def ensure_child(
    client: KubeClient, res: Resource, desired: Mapping[str, Any], owner_uid: str, owner_desc: str
) -> Ensured:
    """Create ``desired``; on 409 fetch the existing object and verify the owner controls it.

    Raises :class:`InvalidSpec` when the apiserver rejects the object (422: something in the spec,
    e.g. a volume source, is invalid), an admission webhook denies it (ChildDenied: e.g. a missing
    runtime) or when a same-named object belongs to someone else.
    """
    meta = desired["metadata"]
    namespace, name = meta["namespace"], meta["name"]
    try:
        created = await client.create(res, namespace, desired)
    except ApiError as exc:
        if exc.invalid:
            raise InvalidSpec(
                f"the API server rejected {desired['kind']} {name}: {exc.message}; "
                "fix the spec field it names",
                reason="ChildRejected",
            ) from None
        if exc.status == 403 and "admission webhook" in exc.message:
            # e.g. Kubeflow Trainer's webhook: the referenced runtime does not exist (yet)
            raise InvalidSpec(
                f"an admission webhook denied {desired['kind']} {name}: {exc.message}",
                reason="ChildDenied",
            ) from None
        if not exc.conflict:
            raise
    else:
        if client.observer is not None:
            client.observer.child_created(str(desired.get("kind")))
        return Ensured(created, True)
    existing = await client.get(res, namespace, name)
    if not is_controlled_by(existing, owner_uid):
        raise InvalidSpec(
            f"{desired['kind']} {name} already exists and is not controlled by {owner_desc}; delete it or "
            "give this resource another name",
            reason="ChildConflict",
        )
    return Ensured(existing, False)


def stale_reason(existing: Mapping[str, Any], spec_hash: str, owner_desc: str) -> InvalidSpec | None:
    """An error when ``existing`` was rendered from a different data-defining spec."""
    annotations = (existing.get("metadata") or {}).get("annotations") or {}
    found = annotations.get(SPEC_HASH_ANNOTATION)
    if found is None or found == spec_hash:
        return None
    return InvalidSpec(
        f"{existing.get('kind')} {existing['metadata']['name']} was created from an earlier spec of "
        f"{owner_desc} (spec hash {found}, now {spec_hash}); the data-defining fields cannot change once "
        "it exists: revert the change, or delete and recreate the resource",
        reason="SpecChangedAfterStart",
    )
