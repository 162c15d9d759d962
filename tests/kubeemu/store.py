"""The emulated apiserver's state and write semantics, independent of HTTP.

Everything here runs on the emulator's event loop thread (the HTTP handlers and the synchronous
test helpers both call into it there), so no locking is needed: every method is synchronous and
atomic with respect to watchers, exactly like one etcd transaction.

Semantics emulated (each one something kopf or our operator relies on):

- ``resourceVersion`` is one global counter; a write that changes nothing is a no-op (no new
  resourceVersion, no watch event), as in the real apiserver, which keeps kopf from looping;
- ``generation`` starts at 1 and is bumped when anything but ``metadata`` (and ``status`` when the
  status subresource exists) changes;
- status subresource isolation: main-resource writes keep the stored ``status``; ``/status`` writes
  change only ``status``;
- ``deletionTimestamp`` + finalizers: a delete of an object with finalizers only marks it; it is
  removed once a write leaves it with no finalizers;
- optimistic concurrency: a stale ``metadata.resourceVersion`` in an update or patch is a 409;
- garbage collection by ``ownerReferences`` uid: Background (default), Foreground (owner waits for
  dependents with the ``foregroundDeletion`` finalizer) and Orphan (references removed);
  ``batch/v1`` Jobs default to Orphan as on a real apiserver (pass ``propagationPolicy=Background``
  to delete their pods); an object created with owners that no longer exist is collected at once;
- namespaces: objects cannot be created in a missing or terminating namespace; deleting a
  namespace deletes everything in it;
- CRDs: creating one serves its resource at once (discovery included), deleting one removes the
  resource and all its objects;
- CRD objects are pruned, defaulted and validated against the CRD's ``openAPIV3Schema`` including
  the supported CEL subset (see :mod:`kubeemu.schema`).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import logging
import secrets
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from . import errors, meta, patching, schema
from .builtin_schema import validate_builtin
from .defaults import apply_create_defaults, job_causes
from .errors import ApiError, Cause
from .resources import BUILTINS, ResourceDef, resources_from_crd
from .selectors import Predicate

log = logging.getLogger(__name__)

CRD_KEY = ("apiextensions.k8s.io", "customresourcedefinitions")
NAMESPACE_KEY = ("", "namespaces")
FOREGROUND = "foregroundDeletion"
HISTORY = 20000  # watch events kept per resource for ?watch&resourceVersion=N resumption

ObjKey = tuple[str | None, str]  # (namespace or None, name)
Json = dict[str, Any]


def now_iso() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class Event:
    """One change, as watchers and internal listeners see it."""

    rv: int
    type: str  # ADDED | MODIFIED | DELETED
    resource: ResourceDef
    obj: Json
    old: Json | None


class Watcher:
    """A live subscription to one resource's events (one per watch request)."""

    def __init__(self, resource: ResourceDef) -> None:
        self.resource = resource
        self.queue: asyncio.Queue[Event | None] = asyncio.Queue()

    def close(self) -> None:
        self.queue.put_nowait(None)


class Store:
    """In-memory objects of all served resources, with apiserver write semantics."""

    def __init__(self, validate_builtins: bool = True) -> None:
        #: Validate built-in kinds against the official strict schemas (see :mod:`kubeemu.builtin_schema`).
        self.validate_builtins = validate_builtins
        self.rv = 0
        self.resources: dict[tuple[str, str], ResourceDef] = {}
        self.objects: dict[tuple[str, str], dict[ObjKey, Json]] = collections.defaultdict(dict)
        self.history: dict[tuple[str, str], collections.deque[Event]] = collections.defaultdict(
            lambda: collections.deque(maxlen=HISTORY)
        )
        self.watchers: dict[tuple[str, str], set[Watcher]] = collections.defaultdict(set)
        #: Synchronous callbacks for every event (the pod runner's controllers use this).
        self.listeners: list[Callable[[Event], None]] = []
        #: Returns a pod's log text: (namespace, name, container, tail_lines) -> text or None.
        self.log_provider: Callable[[str, str, str | None, int | None], str | None] | None = None
        #: Admission webhooks of installed add-ons per (group, plural), run on writes of the object
        #: itself (not of its status), in the apiserver's order: mutating hooks ``hook(obj, old)``
        #: (which may change ``obj``) before the schema, validating hooks (which raise
        #: :class:`ApiError` to deny) after it; see :mod:`kubeemu.jobset` and :mod:`kubeemu.trainer`.
        self.mutating_hooks: dict[tuple[str, str], list[Callable[[Json, Json | None], None]]] = (
            collections.defaultdict(list)
        )
        self.validating_hooks: dict[tuple[str, str], list[Callable[[Json, Json | None], None]]] = (
            collections.defaultdict(list)
        )
        self.closed = False  # set on shutdown: no new watch streams
        for resource in BUILTINS:
            self.resources[resource.key] = resource
        for name in ("default", "kube-system"):
            self.create(self.resources[NAMESPACE_KEY], None, {"metadata": {"name": name}})

    # ---------------------------------------------------------------- resources and lookups

    def resolve(self, group: str, version: str, plural: str) -> ResourceDef:
        resource = self.resources.get((group, plural))
        if resource is None or version not in resource.versions:
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource ({group or 'core'}/{version} {plural})",
            )
        return resource

    def find(self, kind_or_plural: str, api_version: str | None = None) -> ResourceDef:
        """Look a resource up by plural, kind or short name (for the helpers' convenience)."""
        group = version = None
        if api_version:
            group, _, version = api_version.rpartition("/")
        lowered = kind_or_plural.lower()
        for resource in self.resources.values():
            if group is not None and (resource.group != group or version not in resource.versions):
                continue
            if lowered in (resource.plural, resource.kind.lower(), resource.singular, *resource.short_names):
                return resource
        raise ApiError(404, "NotFound", f"no resource {kind_or_plural!r} ({api_version or 'any group'})")

    def get(self, resource: ResourceDef, namespace: str | None, name: str) -> Json:
        obj = self.objects[resource.key].get(self._okey(resource, namespace, name))
        if obj is None:
            raise errors.not_found(resource.plural, name, resource.group)
        return obj

    def list(
        self,
        resource: ResourceDef,
        namespace: str | None,
        label: Predicate | None = None,
        field: Predicate | None = None,
    ) -> list[Json]:
        items = [
            obj
            for (obj_namespace, _), obj in sorted(
                self.objects[resource.key].items(), key=lambda item: str(item[0])
            )
            if (namespace is None or obj_namespace == namespace)
            and (label is None or label(obj))
            and (field is None or field(obj))
        ]
        return items

    def _okey(self, resource: ResourceDef, namespace: str | None, name: str) -> ObjKey:
        return (namespace if resource.namespaced else None, name)

    # ---------------------------------------------------------------- events

    def _emit(self, type_: str, resource: ResourceDef, obj: Json, old: Json | None) -> None:
        event = Event(self.rv, type_, resource, obj, old)
        self.history[resource.key].append(event)
        for watcher in list(self.watchers[resource.key]):
            watcher.queue.put_nowait(event)
        for listener in list(self.listeners):
            try:
                listener(event)
            except Exception:  # a broken listener must not break the apiserver
                log.exception("kubeemu: listener failed on %s %s", type_, resource.plural)

    def subscribe(self, resource: ResourceDef) -> Watcher:
        watcher = Watcher(resource)
        if self.closed:
            watcher.close()  # the server is stopping: a late watch ends at once
        self.watchers[resource.key].add(watcher)
        return watcher

    def unsubscribe(self, watcher: Watcher) -> None:
        self.watchers[watcher.resource.key].discard(watcher)

    def events_since(self, resource: ResourceDef, rv: int) -> list[Event] | None:
        """Events after ``rv``, or None when the history no longer reaches back that far (410)."""
        history = self.history[resource.key]
        if history and len(history) == history.maxlen and history[0].rv > rv + 1:
            return None
        return [event for event in history if event.rv > rv]

    def close_watchers(self, key: tuple[str, str] | None = None) -> None:
        """End the watch streams of one resource, or all of them for good (server shutdown)."""
        if key is None:
            self.closed = True
        for watcher_key, watchers in self.watchers.items():
            if key is None or watcher_key == key:
                for watcher in list(watchers):
                    watcher.close()

    # ---------------------------------------------------------------- create

    def create(self, resource: ResourceDef, namespace: str | None, body: Any, dry_run: bool = False) -> Json:
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        obj = copy.deepcopy(body)
        self._check_type(resource, obj)
        obj["apiVersion"] = obj.get("apiVersion") or resource.api_version()
        obj["kind"] = resource.kind
        metadata: Json = obj.setdefault("metadata", {})
        if not isinstance(metadata, dict):
            raise errors.bad_request("metadata must be an object")
        if resource.namespaced:
            body_namespace = metadata.get("namespace")
            if namespace is None:
                namespace = body_namespace
            elif body_namespace not in (None, namespace):
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent on the request"
                )
            if not namespace:
                raise errors.bad_request(f"{resource.plural} must be created in a namespace")
            ns_obj = self.objects[NAMESPACE_KEY].get((None, namespace))
            if ns_obj is None:
                raise errors.not_found("namespaces", namespace)
            if ns_obj["metadata"].get("deletionTimestamp"):
                raise ApiError(
                    403,
                    "Forbidden",
                    f'{resource.plural} "{metadata.get("name", "")}" is forbidden: '
                    "unable to create new content "
                    f"in namespace {namespace} because it is being terminated",
                )
            metadata["namespace"] = namespace
        else:
            metadata.pop("namespace", None)
        if not metadata.get("name") and metadata.get("generateName"):
            metadata["name"] = self._generate_name(resource, namespace, metadata["generateName"])
        name = metadata.get("name")
        causes = meta.validate_metadata(metadata, resource.key in meta.LABEL_NAMED, None)
        if causes:
            raise errors.invalid(resource.kind, str(name or ""), causes, resource.group)
        assert isinstance(name, str)
        okey = self._okey(resource, namespace, name)
        if okey in self.objects[resource.key]:
            raise errors.already_exists(resource.plural, name, resource.group)

        for system_field in (
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "resourceVersion",
            "managedFields",
        ):
            metadata.pop(system_field, None)
        metadata["uid"] = str(uuid.uuid4())
        metadata["creationTimestamp"] = now_iso()
        metadata["generation"] = 1
        if resource.has_status and resource.crd_name is not None:
            obj.pop("status", None)  # CRs with a status subresource ignore status on create
        apply_create_defaults(resource.group, resource.plural, obj)
        obj = self._admit(resource, obj, None)
        if resource.key == ("", "pods"):
            self._check_service_account(obj)
        metadata = obj["metadata"]  # admission returns a new object: keep writing to the stored one
        causes = meta.template_label_causes(obj)
        if causes:
            raise errors.invalid(resource.kind, name, causes, resource.group)
        if resource.key == CRD_KEY:
            self._check_crd(obj)
        if dry_run:
            return obj

        self.rv += 1
        metadata["resourceVersion"] = str(self.rv)
        self.objects[resource.key][okey] = obj
        if resource.key == CRD_KEY:
            self._install_crd(obj)
        self._emit("ADDED", resource, obj, None)
        refs = metadata.get("ownerReferences") or []
        if refs and not any(self._exists_uid(ref.get("uid", "")) for ref in refs):
            # The real garbage collector also deletes a dependent created after all its owners were
            # gone (a controller that raced the owner's deletion): the create succeeds, then GC runs.
            self._delete_quietly(resource, obj, "Background")
        return obj

    def _generate_name(self, resource: ResourceDef, namespace: str | None, prefix: str) -> str:
        for _ in range(100):
            candidate = prefix + secrets.token_hex(3)[:5]
            if self._okey(resource, namespace, candidate) not in self.objects[resource.key]:
                return candidate
        raise ApiError(
            409, "AlreadyExists", f"could not generate a unique name from {prefix!r}"
        )  # pragma: no cover

    def _check_type(self, resource: ResourceDef, obj: Json) -> None:
        kind = obj.get("kind")
        api_version = obj.get("apiVersion")
        if kind not in (None, resource.kind):
            raise errors.bad_request(f"the kind {kind!r} does not match the resource {resource.plural!r}")
        if api_version is not None and api_version not in {
            resource.api_version(v) for v in resource.versions
        }:
            raise errors.bad_request(
                f"the apiVersion {api_version!r} does not match {resource.api_version()!r}"
            )

    def _check_service_account(self, pod: Json) -> None:
        """The ServiceAccount admission plugin: a pod naming a ServiceAccount that does not exist in its
        namespace is refused (403, the apiserver's message). ``default`` always passes: the service
        account controller creates it in every namespace, which the emulator does not model."""
        account = (pod.get("spec") or {}).get("serviceAccountName") or "default"
        namespace = pod["metadata"]["namespace"]
        if account == "default" or (namespace, account) in self.objects[("", "serviceaccounts")]:
            return
        raise ApiError(
            403,
            "Forbidden",
            f'pods "{pod["metadata"].get("name", "")}" is forbidden: error looking up service account '
            f'{namespace}/{account}: serviceaccount "{account}" not found',
        )

    def _admit(self, resource: ResourceDef, obj: Json, old: Json | None, webhooks: bool = True) -> Json:
        """Built-ins: the official strict schema. CRs: prune, default, validate (+ transition rules)."""
        for hook in self.mutating_hooks.get(resource.key, []) if webhooks else []:
            hook(obj, old)
        obj = self._admit_schema(resource, obj, old)
        for hook in self.validating_hooks.get(resource.key, []) if webhooks else []:
            hook(obj, old)
        return obj

    def _admit_schema(self, resource: ResourceDef, obj: Json, old: Json | None) -> Json:
        if resource.crd_name is None:
            causes = validate_builtin(obj) if self.validate_builtins else []
            if resource.key == ("batch", "jobs"):
                causes += job_causes(obj, old)
            if causes:
                raise errors.invalid(resource.kind, obj["metadata"].get("name", ""), causes, resource.group)
            return obj
        version = obj.get("apiVersion", "").rpartition("/")[2] or resource.preferred_version
        crd_schema = resource.schema(version) or resource.schema()
        if crd_schema is None:
            return obj
        admitted, causes = schema.admit(obj, crd_schema, old)
        if causes:
            raise errors.invalid(resource.kind, obj["metadata"].get("name", ""), causes, resource.group)
        return admitted

    # ---------------------------------------------------------------- update / patch

    def replace(
        self,
        resource: ResourceDef,
        namespace: str | None,
        name: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Json:
        """PUT: ``metadata.resourceVersion`` is required and must be current (else 409)."""
        if not isinstance(body, dict):
            raise errors.bad_request("the request body must be a JSON object")
        old = self.get(resource, namespace, name)
        self._check_type(resource, body)
        body_meta = body.get("metadata") or {}
        if body_meta.get("name") not in (None, name):
            raise errors.bad_request("the name of the object does not match the name on the URL")
        rv = body_meta.get("resourceVersion")
        if not rv:
            raise errors.invalid(
                resource.kind,
                name,
                [Cause("metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update")],
                resource.group,
            )
        if str(rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(resource.plural, name, resource.group)
        return self._commit(resource, old, copy.deepcopy(body), subresource, dry_run)

    def patch(
        self,
        resource: ResourceDef,
        namespace: str | None,
        name: str,
        content_type: str,
        patch: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> Json:
        old = self.get(resource, namespace, name)
        if isinstance(patch, dict):
            rv = (patch.get("metadata") or {}).get("resourceVersion")
            if rv is not None and str(rv) != old["metadata"]["resourceVersion"]:
                raise errors.conflict(resource.plural, name, resource.group)
        new = patching.apply_patch(content_type, copy.deepcopy(old), patch)
        return self._commit(resource, old, new, subresource, dry_run)

    def _commit(
        self, resource: ResourceDef, old: Json, new: Json, subresource: str | None, dry_run: bool
    ) -> Json:
        old_meta = old["metadata"]
        if subresource == "status":
            if not resource.has_status:
                raise errors.not_found(f"{resource.plural}/status", old_meta["name"], resource.group)
            # /status writes change only .status; everything else is taken from the stored object.
            status = new.get("status")
            new = copy.deepcopy(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif subresource not in (None, ""):
            raise errors.method_not_allowed(f"subresource {subresource!r} cannot be written")
        elif resource.has_status:
            if "status" in old:
                new["status"] = copy.deepcopy(old["status"])
            else:
                new.pop("status", None)

        new_meta = new.setdefault("metadata", {})
        if not isinstance(new_meta, dict):
            raise errors.bad_request("metadata must be an object")
        for system_field in ("uid", "creationTimestamp", "name", "namespace", "generation"):
            if system_field in old_meta:
                new_meta[system_field] = old_meta[system_field]
            else:
                new_meta.pop(system_field, None)
        for system_field in ("deletionTimestamp", "deletionGracePeriodSeconds"):
            if system_field in old_meta:
                new_meta[system_field] = old_meta[system_field]
            else:
                new_meta.pop(system_field, None)
        new_meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"] = new.get("apiVersion") or old["apiVersion"]
        new["kind"] = resource.kind

        causes = meta.validate_metadata(new_meta, resource.key in meta.LABEL_NAMED, old_meta)
        if causes:
            raise errors.invalid(resource.kind, old_meta["name"], causes, resource.group)
        new = self._admit(resource, new, old, webhooks=subresource in (None, ""))
        causes = meta.template_label_causes(new)
        if causes:
            raise errors.invalid(resource.kind, old_meta["name"], causes, resource.group)
        if resource.key == CRD_KEY:
            self._check_crd(new)

        if _spec_part(new, resource) != _spec_part(old, resource):
            new["metadata"]["generation"] = int(old_meta.get("generation", 1)) + 1
        if new == old:
            return old  # a no-op write: no new resourceVersion, no watch event
        if dry_run:
            return new
        return self._store_update(resource, old, new)

    def _store_update(self, resource: ResourceDef, old: Json, new: Json, release: bool = True) -> Json:
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        okey = self._okey(resource, new["metadata"].get("namespace"), new["metadata"]["name"])
        self.objects[resource.key][okey] = new
        if resource.key == CRD_KEY:
            self._install_crd(new)
        self._emit("MODIFIED", resource, new, old)
        if release and new["metadata"].get("deletionTimestamp") and not new["metadata"].get("finalizers"):
            self._remove(resource, new)
        return new

    # ---------------------------------------------------------------- delete

    def delete(
        self,
        resource: ResourceDef,
        namespace: str | None,
        name: str,
        propagation: str | None = None,
        preconditions: Json | None = None,
        dry_run: bool = False,
    ) -> Json:
        obj = self.get(resource, namespace, name)
        obj_meta = obj["metadata"]
        for key in ("uid", "resourceVersion"):
            expected = (preconditions or {}).get(key)
            if expected is not None and expected != obj_meta.get(key):
                raise errors.conflict(
                    resource.plural, name, resource.group, f"Precondition failed: {key} mismatch"
                )
        if dry_run:
            return obj
        if obj_meta.get("deletionTimestamp"):
            return obj  # already being deleted: deleting again changes nothing
        if propagation is None:
            propagation = "Orphan" if resource.key == ("batch", "jobs") else "Background"
        if propagation not in ("Background", "Foreground", "Orphan"):
            raise errors.bad_request(f"unsupported propagationPolicy {propagation!r}")

        if propagation == "Orphan":
            self._orphan_dependents(obj_meta["uid"])
        if propagation == "Foreground" and self._dependents(obj_meta["uid"]):
            new = copy.deepcopy(obj)
            new["metadata"]["finalizers"] = [*new["metadata"].get("finalizers", []), FOREGROUND]
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            marked = self._store_update(resource, obj, new)
            for dep_resource, dependent in self._dependents(obj_meta["uid"]):
                self._delete_quietly(dep_resource, dependent, "Foreground")
            self._release_foreground(obj_meta["uid"])
            return marked
        if resource.key == NAMESPACE_KEY:
            return self._delete_namespace(resource, obj)
        if obj_meta.get("finalizers"):
            new = copy.deepcopy(obj)
            new["metadata"]["deletionTimestamp"] = now_iso()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            return self._store_update(resource, obj, new)
        self._remove(resource, obj)
        return obj

    def delete_collection(
        self, resource: ResourceDef, namespace: str | None, label: Predicate | None, field: Predicate | None
    ) -> list[Json]:
        deleted = []
        for obj in self.list(resource, namespace, label, field):
            deleted.append(self._delete_quietly(resource, obj, None))
        return [obj for obj in deleted if obj is not None]

    def _delete_quietly(self, resource: ResourceDef, obj: Json, propagation: str | None) -> Json | None:
        obj_meta = obj["metadata"]
        try:
            return self.delete(resource, obj_meta.get("namespace"), obj_meta["name"], propagation)
        except ApiError as error:
            if error.code != 404:
                raise
            return None

    def _remove(self, resource: ResourceDef, obj: Json) -> None:
        """Really delete: emit DELETED, then collect dependents and finish waiting owners."""
        obj_meta = obj["metadata"]
        okey = self._okey(resource, obj_meta.get("namespace"), obj_meta["name"])
        if self.objects[resource.key].pop(okey, None) is None:
            return
        self.rv += 1
        gone = copy.deepcopy(obj)
        gone["metadata"]["resourceVersion"] = str(self.rv)
        self._emit("DELETED", resource, gone, obj)
        if resource.key == CRD_KEY:
            self._uninstall_crd(obj)
        self._collect_garbage(obj_meta["uid"])
        for ref in obj_meta.get("ownerReferences") or []:
            self._release_foreground(ref.get("uid"))
        if resource.namespaced:
            self._maybe_finish_namespace(obj_meta.get("namespace"))

    def _all_objects(self) -> Iterator[tuple[ResourceDef, Json]]:
        for key, objects in list(self.objects.items()):
            resource = self.resources.get(key)
            if resource is None:
                continue
            for obj in list(objects.values()):
                yield resource, obj

    def _exists_uid(self, uid: str) -> bool:
        return any(obj["metadata"].get("uid") == uid for _, obj in self._all_objects())

    def _dependents(self, uid: str) -> list[tuple[ResourceDef, Json]]:
        return [
            (resource, obj)
            for resource, obj in self._all_objects()
            if any(ref.get("uid") == uid for ref in obj["metadata"].get("ownerReferences") or [])
        ]

    def _collect_garbage(self, uid: str) -> None:
        """Background cascade: delete dependents whose every owner is gone; drop dangling refs."""
        for resource, dependent in self._dependents(uid):
            refs = dependent["metadata"].get("ownerReferences") or []
            alive = [ref for ref in refs if ref.get("uid") != uid and self._exists_uid(ref.get("uid", ""))]
            if alive:
                new = copy.deepcopy(dependent)
                new["metadata"]["ownerReferences"] = [ref for ref in refs if ref.get("uid") != uid]
                self._store_update(resource, dependent, new)
            else:
                self._delete_quietly(resource, dependent, "Background")

    def _orphan_dependents(self, uid: str) -> None:
        for resource, dependent in self._dependents(uid):
            new = copy.deepcopy(dependent)
            refs = new["metadata"].get("ownerReferences") or []
            new["metadata"]["ownerReferences"] = [ref for ref in refs if ref.get("uid") != uid]
            if not new["metadata"]["ownerReferences"]:
                del new["metadata"]["ownerReferences"]
            self._store_update(resource, dependent, new)

    def _release_foreground(self, uid: str | None) -> None:
        """Drop ``foregroundDeletion`` from an owner once it has no dependents left."""
        if not uid or self._dependents(uid):
            return
        for resource, owner in self._all_objects():
            owner_meta = owner["metadata"]
            if owner_meta.get("uid") == uid and FOREGROUND in (owner_meta.get("finalizers") or []):
                new = copy.deepcopy(owner)
                new["metadata"]["finalizers"] = [f for f in owner_meta["finalizers"] if f != FOREGROUND]
                self._store_update(resource, owner, new)

    def _delete_namespace(self, resource: ResourceDef, obj: Json) -> Json:
        new = copy.deepcopy(obj)
        new["metadata"]["deletionTimestamp"] = now_iso()
        new["status"] = {"phase": "Terminating"}
        marked = self._store_update(resource, obj, new, release=False)
        namespace = obj["metadata"]["name"]
        for content_resource, content in self._all_objects():
            if content_resource.namespaced and content["metadata"].get("namespace") == namespace:
                self._delete_quietly(content_resource, content, "Background")
        self._maybe_finish_namespace(namespace)
        return marked

    def _maybe_finish_namespace(self, namespace: str | None) -> None:
        ns_obj = self.objects[NAMESPACE_KEY].get((None, namespace or ""))
        if ns_obj is None or not ns_obj["metadata"].get("deletionTimestamp"):
            return
        for resource, obj in self._all_objects():
            if resource.namespaced and obj["metadata"].get("namespace") == namespace:
                return
        if not ns_obj["metadata"].get("finalizers"):
            self._remove(self.resources[NAMESPACE_KEY], ns_obj)

    # ---------------------------------------------------------------- CRDs

    def _check_crd(self, crd: Json) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        causes = []
        for key in ("group", "scope"):
            if not spec.get(key):
                causes.append(Cause(f"spec.{key}", "Required value", "FieldValueRequired"))
        for key in ("plural", "kind"):
            if not names.get(key):
                causes.append(Cause(f"spec.names.{key}", "Required value", "FieldValueRequired"))
        if not spec.get("versions"):
            causes.append(Cause("spec.versions", "Required value", "FieldValueRequired"))
        expected = f"{names.get('plural')}.{spec.get('group')}"
        if crd["metadata"].get("name") != expected:
            given = crd["metadata"].get("name")
            causes.append(
                Cause("metadata.name", f'Invalid value: "{given}": must be spec.names.plural+"."+spec.group')
            )
        if causes:
            raise errors.invalid(
                "CustomResourceDefinition", crd["metadata"].get("name", ""), causes, "apiextensions.k8s.io"
            )

    def _install_crd(self, crd: Json) -> None:
        if crd["metadata"].get("deletionTimestamp"):
            return
        resource = resources_from_crd(crd)
        previous = self.resources.get(resource.key)
        if previous is not None and previous.crd_name is None:
            return  # never shadow a built-in
        self.resources[resource.key] = resource
        if not crd.get("status", {}).get("acceptedNames"):
            # Mark it established in place (the real apiserver does it via the status subresource).
            crd["status"] = {
                "acceptedNames": crd["spec"]["names"],
                "storedVersions": [v["name"] for v in crd["spec"]["versions"] if v.get("storage")],
                "conditions": [
                    {
                        "type": "NamesAccepted",
                        "status": "True",
                        "reason": "NoConflicts",
                        "lastTransitionTime": now_iso(),
                    },
                    {
                        "type": "Established",
                        "status": "True",
                        "reason": "InitialNamesAccepted",
                        "lastTransitionTime": now_iso(),
                    },
                ],
            }

    def _uninstall_crd(self, crd: Json) -> None:
        resource = resources_from_crd(crd)
        if self.resources.get(resource.key, None) is None or self.resources[resource.key].crd_name is None:
            return
        for obj in list(self.objects[resource.key].values()):
            self._remove(self.resources[resource.key], obj)
        del self.resources[resource.key]
        self.objects.pop(resource.key, None)
        self.close_watchers(resource.key)


def _spec_part(obj: Json, resource: ResourceDef) -> Json:
    """What ``generation`` tracks: everything but metadata (and status, with the subresource)."""
    skipped = {"metadata", "status"} if resource.has_status else {"metadata"}
    return {key: value for key, value in obj.items() if key not in skipped}
