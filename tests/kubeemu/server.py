"""The HTTP face of the emulator: a ``kmock`` handler that routes Kubernetes API calls to the store.

Built on ``kmock.KubernetesScaffold`` so that everything kmock offers still works on top of the
emulation: request recording for assertions (``server.requests``) and the ``<<`` DSL for injecting
faults or overrides, e.g. ``server['patch', kmock.resource('sft.dev', 'v1alpha1', 'sftruns')] << 500``.
Our routing reaction is registered below default priority, so any reaction a test adds wins.

Why we parse paths ourselves: kmock 0.8's path parser fails on ``/api/v1/namespaces`` (it raises)
and reads ``/api/v1/namespaces/NAME`` as "namespace NAME, no resource". We build kmock ``Request``
objects with the correct resource/namespace/name/subresource instead, so kmock's criteria see the
right thing, and serve discovery from the store's live resource registry (kmock's scaffold derives
it from declared reactions and cannot add or drop CRD resources at runtime).
"""

from __future__ import annotations

import asyncio
import collections
import copy
import json
import logging
from collections.abc import AsyncIterator, Callable, Mapping
from datetime import UTC, datetime
from typing import Any

import aiohttp.web
import attrs
import kmock
import yaml
from kmock._internal import rendering

from . import errors, tables
from .errors import ApiError
from .resources import ResourceDef
from .selectors import parse_field_selector, parse_label_selector
from .store import Event, Json, Store

log = logging.getLogger(__name__)

JSON_CONTENT_TYPE = "application/json"
SUBRESOURCE_VERBS = {"status": ["get", "patch", "update"], "log": ["get"], "finalize": ["update"]}
VERSION_INFO = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0-kubeemu",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-01-01T00:00:00Z",
    "goVersion": "go1.24",
    "compiler": "gc",
    "platform": "linux/amd64",
}


@attrs.frozen
class Route:
    """A parsed Kubernetes API path."""

    group: str
    version: str
    plural: str | None = None
    namespace: str | None = None
    name: str | None = None
    subresource: str | None = None


def parse_route(path: str) -> Route | None:
    """Parse ``/api/v1/...`` and ``/apis/G/V/...``; None for discovery and non-API paths."""
    parts = [part for part in path.strip("/").split("/") if part]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        return None
    namespace = None
    # /api/v1/namespaces/NS/PLURAL... is namespaced; /api/v1/namespaces/NAME[/status|/finalize] is
    # the Namespace object itself (the same disambiguation the real apiserver makes).
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in ("status", "finalize"):
        namespace, rest = rest[1], rest[2:]
    if not rest:
        return Route(group, version)
    plural = rest[0]
    name = rest[1] if len(rest) > 1 else None
    subresource = "/".join(rest[2:]) or None
    return Route(group, version, plural, namespace, name, subresource)


@attrs.define(kw_only=True)
class ApiServer(kmock.KubernetesScaffold):
    """A kmock handler serving the emulated Kubernetes API from a :class:`Store`.

    ``record_requests=False`` stops kmock from keeping every request (for long benchmarks).
    """

    store: Store = attrs.field(factory=Store)
    record_requests: bool = True
    #: Requests served, by (method, plural, subresource); a watch counts as method ``WATCH``. Kept even
    #: with ``record_requests=False``: the benchmarks count the API calls of the operator with it.
    calls: collections.Counter[tuple[str, str | None, str | None]] = attrs.field(
        factory=collections.Counter, init=False
    )
    #: "Now" for the ages in server-side Tables (a test pins it to compare two clients' output).
    table_clock: Callable[[], datetime] = attrs.field(factory=lambda: _utcnow)
    _route_reaction: Any = attrs.field(default=None, init=False)
    _streams: set[asyncio.Task[Any]] = attrs.field(factory=set, init=False)

    def __attrs_post_init__(self) -> None:
        super().__attrs_post_init__()
        # Below default priority (0): user reactions win; above the scaffold's -inf fallbacks.
        self._route_reaction = (self**-1000) << self._route

    # kmock's own __call__ parses the path with its buggy parser; this is the same flow with ours.
    async def __call__(self, raw_request: aiohttp.web.BaseRequest) -> aiohttp.web.StreamResponse:
        await raw_request.read()
        raw_response: aiohttp.web.StreamResponse | None = None
        try:
            request = await self._parse(raw_request)
            self._requests.append(request)
            self._count(raw_request.method, request)
            try:
                return await self._handle(request)
            except rendering.StreamingError as error:
                raw_response = error.args[0]
                raise error.__cause__ or error from None
            finally:
                if not self.record_requests:
                    self._forget(request)
        except Exception as error:
            if not isinstance(error, ApiError):
                log.exception("kubeemu: unhandled error serving %s %s", raw_request.method, raw_request.path)
            if raw_response is None or not raw_response.prepared:
                return await self._render_error(error)
            await self._stream_error(error, raw_response)
            await raw_response.write_eof()
            return raw_response

    def _count(self, method: str, request: rendering.Request) -> None:
        if method == "GET" and request.params.get("watch") in ("true", "1"):
            method = "WATCH"
        plural = request.resource.plural if request.resource is not None else None
        self.calls[(method, plural, request.subresource)] += 1

    def _forget(self, request: rendering.Request) -> None:
        if request in self._requests:
            self._requests.remove(request)
        for payload in self._payloads:
            if request in payload._requests:
                payload._requests.remove(request)

    async def _parse(self, raw_request: aiohttp.web.BaseRequest) -> rendering.Request:
        body = await raw_request.read()
        text = body.decode("utf-8", errors="replace")
        data: Any = None
        if body:
            try:
                data = json.loads(body)
            except ValueError:
                if "yaml" in raw_request.headers.get("Content-Type", ""):
                    try:
                        data = yaml.safe_load(text)
                    except yaml.YAMLError:
                        data = None
        route = parse_route(raw_request.path)
        resource = None
        action = None
        if route is not None:
            resource = kmock.resource(group=route.group, version=route.version, plural=route.plural)
            action = _guess_action(raw_request.method, route, dict(raw_request.query))
        return rendering.Request(
            raw_request=raw_request,
            url=raw_request.url,
            method=raw_request.method,
            params=dict(raw_request.query),
            headers=dict(raw_request.headers),
            cookies=dict(raw_request.cookies),
            data=data,
            body=body,
            text=text,
            action=action,
            resource=resource,
            namespace=route.namespace if route else None,
            name=route.name if route else None,
            subresource=route.subresource if route else None,
        )

    async def _render_error(self, exc: Exception) -> aiohttp.web.StreamResponse:
        if isinstance(exc, ApiError):
            return aiohttp.web.json_response(exc.status(), status=exc.code)
        return await super()._render_error(exc)

    # ---------------------------------------------------------------- routing

    def _route(self, request: rendering.Request) -> rendering.Response:
        try:
            response = self._dispatch(request)
        except ApiError as error:
            response = rendering.Response(status=error.code, payload=error.status())
        # Every answer names its Content-Type. kmock 0.8 merges the headers of the Response a callable
        # returns into the one shared reaction that serves all requests (``Response._render`` sets
        # them on itself), so a header set once (text/plain of a pod log) stuck to every later answer
        # and kopf's ``response.json()`` failed with ContentTypeError (issue 13). An explicit header on
        # each answer overwrites whatever the shared reaction carries from before.
        headers = {"Content-Type": JSON_CONTENT_TYPE, **(response.headers or {})}
        return attrs.evolve(response, headers=headers)

    def _dispatch(self, request: rendering.Request) -> rendering.Response:
        path = request.url.path
        method = request.method.value.upper() if request.method is not None else "GET"
        route = parse_route(path)
        if route is None or route.plural is None:
            if method != "GET":
                raise errors.method_not_allowed(f"{method} is not allowed on {path}")
            return _ok(self._discovery(path))
        resource = self.store.resolve(route.group, route.version, route.plural)
        if route.namespace is not None and not resource.namespaced:
            raise errors.not_found(resource.plural, route.name or "", resource.group)
        params = request.params
        dry_run = params.get("dryRun") == "All"
        store = self.store
        if route.name is None:
            if method == "GET" and params.get("watch") in ("true", "1"):
                return rendering.Response(payload=self._watch(request, resource, route, params))
            if method == "GET":
                listed = self._list(resource, route, params)
                return _ok(self._table(request, resource, route, listed["items"]) or listed)
            if method == "POST":
                self._require_namespace(resource, route)
                created = store.create(resource, route.namespace, request.data, dry_run=dry_run)
                return rendering.Response(status=201, payload=_served(created, resource, route.version))
            if method == "DELETE":
                self._require_namespace(resource, route)
                deleted = store.delete_collection(
                    resource,
                    route.namespace,
                    parse_label_selector(params.get("labelSelector")),
                    parse_field_selector(params.get("fieldSelector")),
                )
                return _ok(_list_body(resource, route.version, deleted, store.rv))
            raise errors.method_not_allowed(f"{method} is not allowed on a collection")

        self._require_namespace(resource, route)
        sub = route.subresource
        if sub is not None and sub not in resource.subresources:
            raise errors.not_found(f"{resource.plural}/{sub}", route.name, resource.group)
        if method == "GET" and sub == "log":
            return self._log(route, params)
        if method == "GET" and params.get("watch") in ("true", "1"):
            selector = f"metadata.name={route.name}"
            params = {
                **params,
                "fieldSelector": ",".join(filter(None, [params.get("fieldSelector"), selector])),
            }
            return rendering.Response(payload=self._watch(request, resource, route, params))
        if method == "GET":
            obj = _served(store.get(resource, route.namespace, route.name), resource, route.version)
            return _ok(self._table(request, resource, route, [obj]) or obj)
        if method == "PUT":
            obj = store.replace(resource, route.namespace, route.name, request.data, sub, dry_run=dry_run)
            return _ok(_served(obj, resource, route.version))
        if method == "PATCH":
            content_type = request.headers.get("Content-Type", "application/merge-patch+json")
            obj = store.patch(
                resource, route.namespace, route.name, content_type, request.data, sub, dry_run=dry_run
            )
            return _ok(_served(obj, resource, route.version))
        if method == "DELETE":
            options = request.data if isinstance(request.data, dict) else {}
            propagation = params.get("propagationPolicy") or options.get("propagationPolicy")
            if propagation is None and "orphanDependents" in options:
                propagation = "Orphan" if options["orphanDependents"] else "Background"
            obj = store.delete(
                resource,
                route.namespace,
                route.name,
                propagation=propagation,
                preconditions=options.get("preconditions"),
                dry_run=dry_run,
            )
            return _ok(_served(obj, resource, route.version))
        raise errors.method_not_allowed(f"{method} is not allowed on {path}")

    @staticmethod
    def _require_namespace(resource: ResourceDef, route: Route) -> None:
        if resource.namespaced and route.namespace is None:
            raise ApiError(
                404,
                "NotFound",
                f"the server could not find the requested resource: {resource.plural} is namespaced; "
                "use /namespaces/NAMESPACE/ in the path",
            )

    def _list(self, resource: ResourceDef, route: Route, params: Mapping[str, str]) -> Json:
        items = self.store.list(
            resource,
            route.namespace,
            parse_label_selector(params.get("labelSelector")),
            parse_field_selector(params.get("fieldSelector")),
        )
        return _list_body(resource, route.version, items, self.store.rv)

    def _table(
        self, request: rendering.Request, resource: ResourceDef, route: Route, items: list[Json]
    ) -> Json | None:
        """The Table a client asking ``as=Table`` gets for a custom resource (kubeemu.tables)."""
        if resource.crd_name is None or not tables.wants_table(request.headers.get("Accept")):
            return None
        crds = self.store.resolve("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        crd = self.store.get(crds, None, resource.crd_name)
        return tables.to_table(
            items,
            tables.printer_columns(crd, route.version),
            resource_version=str(self.store.rv),
            include_object=request.params.get("includeObject"),
            now=self.table_clock(),
        )

    def _log(self, route: Route, params: Mapping[str, str]) -> rendering.Response:
        assert route.name is not None
        pod = self.store.get(self.store.resolve("", "v1", "pods"), route.namespace, route.name)
        tail = int(params["tailLines"]) if params.get("tailLines") else None
        container = params.get("container")
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        if container is not None and container not in containers:
            raise errors.bad_request(f"container {container} is not valid for pod {route.name}")
        text = None
        if self.store.log_provider is not None:
            text = self.store.log_provider(route.namespace or "", route.name, container, tail)
        return rendering.Response(
            status=200, payload=(text or "").encode(), headers={"Content-Type": "text/plain"}
        )

    # ---------------------------------------------------------------- watch

    async def _watch(
        self, request: rendering.Request, resource: ResourceDef, route: Route, params: Mapping[str, str]
    ) -> AsyncIterator[Any]:
        store = self.store
        label = parse_label_selector(params.get("labelSelector"))
        field = parse_field_selector(params.get("fieldSelector"))
        timeout = float(params["timeoutSeconds"]) if params.get("timeoutSeconds") else None
        send_initial = params.get("sendInitialEvents") == "true"
        bookmarks = params.get("allowWatchBookmarks") == "true"
        since = params.get("resourceVersion")

        def visible(obj: Json | None) -> bool:
            if obj is None:
                return False
            if route.namespace is not None and obj["metadata"].get("namespace") != route.namespace:
                return False
            return label(obj) and field(obj)

        # Everything up to the first yield runs synchronously: snapshot and subscription are atomic.
        watcher = store.subscribe(resource)
        backlog: list[Json] = []
        if not since or since == "0" or send_initial:
            for obj in store.list(resource, route.namespace, label, field):
                backlog.append({"type": "ADDED", "object": _served(obj, resource, route.version)})
            if send_initial and bookmarks:
                backlog.append(
                    {
                        "type": "BOOKMARK",
                        "object": {
                            "kind": resource.kind,
                            "apiVersion": resource.api_version(route.version),
                            "metadata": {
                                "resourceVersion": str(store.rv),
                                "annotations": {"k8s.io/initial-events-end": "true"},
                            },
                        },
                    }
                )
        else:
            try:
                replay = store.events_since(resource, int(since))
            except ValueError:
                replay = None
            if replay is None:
                store.unsubscribe(watcher)
                yield b""
                yield {"type": "ERROR", "object": errors.gone(f"too old resource version: {since}").status()}
                return
            for event in replay:
                item = _watch_item(event, visible, resource, route.version)
                if item is not None:
                    backlog.append(item)

        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout else None
        transport = request._raw_request.transport if request._raw_request is not None else None
        try:
            yield b""
            for item in backlog:
                yield item
            while True:
                remaining = 1.0 if deadline is None else min(1.0, deadline - loop.time())
                if remaining <= 0:
                    return
                try:
                    event = await asyncio.wait_for(watcher.queue.get(), remaining)
                except TimeoutError:
                    if transport is not None and transport.is_closing():
                        return  # the client went away
                    continue
                if event is None:
                    return  # the server is stopping or the resource was removed
                item = _watch_item(event, visible, resource, route.version)
                if item is not None:
                    yield item
        finally:
            store.unsubscribe(watcher)

    # ---------------------------------------------------------------- discovery

    def _discovery(self, path: str) -> Json:
        parts = [part for part in path.strip("/").split("/") if part]
        resources = list(self.store.resources.values())
        if not parts:
            paths = {"/api", "/api/v1", "/apis", "/version"}
            for resource in resources:
                if resource.group:
                    paths.add(f"/apis/{resource.group}")
                    paths.update(f"/apis/{resource.group}/{version}" for version in resource.versions)
            return {"paths": sorted(paths)}
        if parts == ["version"]:
            return dict(VERSION_INFO)
        if parts == ["api"]:
            return {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}
        if parts[0] == "api" and len(parts) == 2:
            return self._resource_list("", parts[1], resources)
        if parts == ["apis"]:
            groups = sorted({resource.group for resource in resources if resource.group})
            return {
                "kind": "APIGroupList",
                "apiVersion": "v1",
                "groups": [self._group(group, resources) for group in groups],
            }
        if parts[0] == "apis" and len(parts) == 2:
            if not any(resource.group == parts[1] for resource in resources):
                raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")
            return {"kind": "APIGroup", "apiVersion": "v1", **self._group(parts[1], resources)}
        if parts[0] == "apis" and len(parts) == 3:
            return self._resource_list(parts[1], parts[2], resources)
        raise ApiError(404, "NotFound", f"the server could not find the requested resource ({path})")

    @staticmethod
    def _group(group: str, resources: list[ResourceDef]) -> Json:
        versions: list[str] = []
        for resource in resources:
            if resource.group == group:
                versions += [version for version in resource.versions if version not in versions]
        return {
            "name": group,
            "versions": [{"groupVersion": f"{group}/{version}", "version": version} for version in versions],
            "preferredVersion": {"groupVersion": f"{group}/{versions[0]}", "version": versions[0]},
        }

    @staticmethod
    def _resource_list(group: str, version: str, resources: list[ResourceDef]) -> Json:
        served = [r for r in resources if r.group == group and version in r.versions]
        if not served:
            raise ApiError(
                404, "NotFound", f"the server could not find the requested resource ({group}/{version})"
            )
        entries: list[Json] = []
        for resource in sorted(served, key=lambda r: r.plural):
            entries.append(
                {
                    "name": resource.plural,
                    "singularName": resource.singular,
                    "namespaced": resource.namespaced,
                    "kind": resource.kind,
                    "verbs": list(
                        ("create", "delete", "deletecollection", "get", "list", "patch", "update", "watch")
                    ),
                    "shortNames": list(resource.short_names),
                    "categories": list(resource.categories),
                }
            )
            for sub in resource.subresources:
                entries.append(
                    {
                        "name": f"{resource.plural}/{sub}",
                        "singularName": "",
                        "namespaced": resource.namespaced,
                        "kind": resource.kind,
                        "verbs": SUBRESOURCE_VERBS.get(sub, ["get"]),
                    }
                )
        return {
            "kind": "APIResourceList",
            "apiVersion": "v1",
            "groupVersion": f"{group}/{version}" if group else version,
            "resources": entries,
        }


def _guess_action(method: str, route: Route, query: dict[str, str]) -> kmock.action | None:
    if route.plural is None:
        return None
    if method == "GET" and query.get("watch") in ("true", "1"):
        return kmock.action.WATCH
    if route.name is None:
        return {"GET": kmock.action.LIST, "POST": kmock.action.CREATE}.get(method)
    return {
        "GET": kmock.action.FETCH,
        "PATCH": kmock.action.UPDATE,
        "PUT": kmock.action.UPDATE,
        "DELETE": kmock.action.DELETE,
    }.get(method)


def _ok(payload: Json) -> rendering.Response:
    return rendering.Response(status=200, payload=payload)


def _utcnow() -> datetime:
    return datetime.now(UTC)


def _served(obj: Json, resource: ResourceDef, version: str) -> Json:
    """A copy of a stored object as served under ``version`` (no conversion, apiVersion only)."""
    served = copy.deepcopy(obj)
    served["apiVersion"] = resource.api_version(version)
    return served


def _list_body(resource: ResourceDef, version: str, items: list[Json], rv: int) -> Json:
    return {
        "apiVersion": resource.api_version(version),
        "kind": f"{resource.kind}List",
        "metadata": {"resourceVersion": str(rv)},
        "items": [_served(item, resource, version) for item in items],
    }


def _watch_item(event: Event, visible: Any, resource: ResourceDef, version: str) -> Json | None:
    """Translate a store event for one watcher; selector transitions become ADDED/DELETED."""
    now_visible = visible(event.obj)
    was_visible = event.type == "MODIFIED" and visible(event.old)
    if event.type == "MODIFIED":
        if now_visible and was_visible:
            kind = "MODIFIED"
        elif now_visible:
            kind = "ADDED"
        elif was_visible:
            kind = "DELETED"
        else:
            return None
    elif now_visible:
        kind = event.type
    else:
        return None
    return {"type": kind, "object": _served(event.obj, resource, version)}
