"""What every kind renders the same way: spec parsing, the ConfigMap, the run-to-completion object.

Both kinds turn a CR into a ConfigMap holding ``config.yaml`` plus one object that runs pods (an
Indexed Job or a PyTorchJob). Their metadata (labels, owner annotations, spec hash, ownerReference,
suspend annotation, Kueue queue label) must agree exactly, because the reconcile, the watch indexes
and Kueue read it back; building it in one place keeps the two kinds from drifting apart.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from sft_operator.api.meta import KindInfo
from sft_operator.api.podspec import BatchFields
from sft_operator.errors import InvalidSpec, invalid_spec_from
from sft_operator.render import meta
from sft_operator.render.pods import CONFIG_KEY

SpecT = TypeVar("SpecT", bound=BaseModel)


@dataclass(frozen=True)
class Children:
    """The rendered children of one CR, and the hash of the spec fields they were rendered from."""

    config_map: dict[str, Any]
    job: dict[str, Any]
    spec_hash: str


def parse_spec(model: type[SpecT], cr: Mapping[str, Any]) -> SpecT:
    """Validate the spec with ``model`` (incl. checks the CRD schema cannot express)."""
    try:
        return model.model_validate(cr.get("spec") or {})
    except ValidationError as exc:
        raise invalid_spec_from(model, exc) from None
    except ValueError as exc:  # raised outside pydantic's wrapping, e.g. by a nested constructor
        raise InvalidSpec(str(exc)) from None


def image_or_default(image: str | None, default: str | None, env_var: str, workload: str) -> str:
    """The spec's image, else the operator's default; a spec with neither cannot run."""
    chosen = image or default
    if not chosen:
        raise InvalidSpec(
            f"spec.image is not set and the operator has no default {workload} image ({env_var}); "
            f"set spec.image to the {workload} image"
        )
    return chosen


def spec_hash(spec: BaseModel, fields: tuple[str, ...], also_default: Mapping[str, Any] | None = None) -> str:
    """Hash of the camelCase spec ``fields`` that define the work (stamped on children).

    Values equal to their defaults are left out, at every depth: a field a newer operator adds with a
    default (``checkpoint.resume``, ``data.allowFullLossMask``) then leaves the hash of a spec that does
    not set it unchanged, so an operator upgrade does not read the children of running CRs as made
    from another spec (``SpecChangedAfterStart``). ``also_default``: top-level values left out too, a
    default a field had before its default changed."""
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    old = also_default or {}
    return meta.spec_hash(
        {key: dumped[key] for key in fields if key in dumped and (key not in old or old[key] != dumped[key])}
    )


@dataclass(frozen=True)
class ChildMeta:
    """The metadata shared by the children of one CR."""

    info: KindInfo
    name: str
    namespace: str
    labels: dict[str, str]
    annotations: dict[str, str]
    """Owner kind/name and the spec hash."""
    owner: dict[str, Any]

    @classmethod
    def of(cls, info: KindInfo, cr: Mapping[str, Any], app: str, digest: str) -> ChildMeta:
        name = cr["metadata"]["name"]
        return cls(
            info=info,
            name=name,
            namespace=cr["metadata"]["namespace"],
            labels=meta.child_labels(info, name, app),
            annotations={**meta.owner_annotations(info, name), meta.SPEC_HASH_ANNOTATION: digest},
            owner=meta.owner_reference(info, cr),
        )

    def object_meta(
        self,
        name: str,
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """metadata of a child: the shared labels/annotations plus the given ones."""
        return {
            "name": name,
            "namespace": self.namespace,
            "labels": {**self.labels, **(labels or {})},
            "annotations": {**self.annotations, **(annotations or {})},
            "ownerReferences": [self.owner],
        }

    def pod_template(
        self,
        pod_spec: dict[str, Any],
        labels: Mapping[str, str] | None = None,
        annotations: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """Pods carry the owner annotations too: the operator's pod index finds their CR by them.
        ``labels``/``annotations`` are the user's extra ones (the operator's win)."""
        return {
            "metadata": {
                "labels": {**(labels or {}), **self.labels},
                "annotations": {**(annotations or {}), **meta.owner_annotations(self.info, self.name)},
            },
            "spec": pod_spec,
        }


def config_map(child: ChildMeta, name: str, config_yaml: str) -> dict[str, Any]:
    """The ConfigMap the pods mount at /etc/sft (key ``config.yaml``)."""
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": child.object_meta(name),
        "data": {CONFIG_KEY: config_yaml},
    }


def runner_metadata(child: ChildMeta, name: str, batch: BatchFields) -> dict[str, Any]:
    """metadata of the Job/PyTorchJob: records the suspend value written (see render.suspend) and
    carries the Kueue queue label so Kueue admits it."""
    labels = {meta.KUEUE_QUEUE_LABEL: batch.queue_name} if batch.queue_name else {}
    annotations = {meta.SUSPEND_ANNOTATION: "true" if batch.suspend else "false"}
    return child.object_meta(name, labels=labels, annotations=annotations)


def run_policy(batch: BatchFields) -> dict[str, Any]:
    """backoffLimit, suspend and the optional deadline/TTL, named alike in Job.spec and runPolicy."""
    out: dict[str, Any] = {"backoffLimit": batch.backoff_limit, "suspend": batch.suspend}
    if batch.active_deadline_seconds is not None:
        out["activeDeadlineSeconds"] = batch.active_deadline_seconds
    if batch.ttl_seconds_after_finished is not None:
        out["ttlSecondsAfterFinished"] = batch.ttl_seconds_after_finished
    return out
