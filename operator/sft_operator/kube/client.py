"""Just enough Kubernetes REST for the operator: get/list/create/patch/delete, pod logs, events.

Why not the official client: the operator needs a dozen calls, arbitrary custom resources by
group/version/plural (PyTorchJob, our own kinds) and asyncio; kopf already parses credentials
(kubeconfig or the in-cluster service account), so :meth:`KubeClient.from_connection_info` reuses
kopf's ``ConnectionInfo`` and nothing is parsed twice.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

MERGE = "application/merge-patch+json"


@dataclass(frozen=True)
class Resource:
    """A REST collection: ``/api/v1/...`` for the core group, ``/apis/<group>/<version>/...`` otherwise."""

    group: str
    version: str
    plural: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, namespace: str | None = None, name: str | None = None, subresource: str | None = None
    ) -> str:
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced and namespace:
            base += f"/namespaces/{quote(namespace, safe='')}"
        base += f"/{self.plural}"
        if name:
            base += f"/{quote(name, safe='')}"
        if subresource:
            base += f"/{subresource}"
        return base


JOBS = Resource("batch", "v1", "jobs")
PODS = Resource("", "v1", "pods")
CONFIGMAPS = Resource("", "v1", "configmaps")
EVENTS = Resource("", "v1", "events")
SERVICEACCOUNTS = Resource("", "v1", "serviceaccounts")
ROLES = Resource("rbac.authorization.k8s.io", "v1", "roles")
ROLEBINDINGS = Resource("rbac.authorization.k8s.io", "v1", "rolebindings")


RETRY_AFTER_MAX = 300.0
"""Longest ``Retry-After`` the operator obeys (seconds): a server asking for more is retried after this
long, so one bad header cannot park a CR for hours. API Priority and Fairness asks for 1-10 s."""


class ApiError(Exception):
    """A failed API call. ``status`` 0 means the server could not be reached.

    ``retry_after`` is the server's ``Retry-After`` (429, 503) in seconds, capped at
    :data:`RETRY_AFTER_MAX`; the work queue waits at least that long before the CR's next try.
    ``verb`` and ``resource`` (e.g. ``create``, ``jobs``) say which call failed, for status messages.
    """

    def __init__(
        self,
        status: int,
        reason: str,
        message: str,
        body: Mapping[str, Any] | None = None,
        *,
        retry_after: float | None = None,
        verb: str = "",
        resource: str = "",
    ) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        self.body = dict(body or {})
        self.retry_after = retry_after
        self.verb = verb
        self.resource = resource

    @property
    def not_found(self) -> bool:
        return self.status == 404

    @property
    def conflict(self) -> bool:
        return self.status == 409

    @property
    def invalid(self) -> bool:
        """422: the object was rejected by validation (the user's spec produced it)."""
        return self.status == 422

    @property
    def transient(self) -> bool:
        """Worth retrying with backoff: unreachable, throttled, server-side errors, timeouts."""
        return self.status in (0, 408, 429) or self.status >= 500

    @property
    def refused(self) -> bool:
        """A permanent refusal of this request (RBAC or quota 403, 422, 400...): retrying the same call
        fails the same way until a person changes something (the spec, a Role, a ResourceQuota)."""
        return 400 <= self.status < 500 and self.status not in (401, 404, 408, 409, 429)

    @property
    def quota_exceeded(self) -> bool:
        """403 from the ResourceQuota admission plugin (its message names the quota: "exceeded quota: q,
        requested: ..., used: ..., limited: ...", k8s.io/apiserver/pkg/admission/plugin/resourcequota)."""
        return self.status == 403 and "exceeded quota" in self.message


class ApiObserver(Protocol):
    """Told about failed calls and created children (``sft_operator.metrics.OperatorMetrics``)."""

    def api_error(self, verb: str, code: int) -> None: ...

    def child_created(self, kind: str) -> None: ...


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """``Retry-After`` (RFC 9110: delay-seconds or an HTTP-date) in seconds, capped at
    :data:`RETRY_AFTER_MAX`; None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if seconds != seconds:  # NaN
        return None
    return min(max(seconds, 0.0), RETRY_AFTER_MAX)


VERBS = {"GET": "get", "POST": "create", "PATCH": "patch", "PUT": "update", "DELETE": "delete"}
"""Kubernetes verb of an HTTP method (a GET of a collection is ``list``: the caller says so)."""


class KubeClient:
    """One aiohttp session against one API server; create it inside the operator's event loop."""

    def __init__(
        self,
        server: str,
        *,
        headers: Mapping[str, str] | None = None,
        ssl_context: ssl.SSLContext | bool | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.server = server.rstrip("/")
        self.headers = dict(headers or {})
        self.ssl_context = ssl_context
        self.timeout = aiohttp.ClientTimeout(total=timeout)
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self.relogin: Callable[[], Any] | None = None
        """Returns a fresh ``ConnectionInfo`` after a 401 (rotated service-account tokens)."""
        self.observer: ApiObserver | None = None
        """Counts failed calls (and, in :func:`sft_operator.kube.children.ensure_child`, creations)."""
        self.on_recovered: Callable[[], None] | None = None
        """Called by the first call that succeeds after a failed one (unreachable, 429 or 5xx): the
        work queue then retries at once the CRs it had backed off while the API server failed."""
        self._failing = False
        self.unposted_events: dict[str, tuple[list[dict[str, Any]], ApiError]] = {}
        """CR uid → (Events a transient error kept back, that error): see ``kube.events``."""

    @classmethod
    def from_connection_info(cls, info: Any, timeout: float = 30.0) -> KubeClient:
        """Build from a ``kopf.ConnectionInfo`` (what kopf's login handlers return)."""
        context: ssl.SSLContext | bool | None = None
        if info.server.startswith("https://"):
            context = _ssl_context(info)
        return cls(
            info.server,
            headers=info.as_http_headers(),
            ssl_context=context,
            timeout=timeout,
        )

    async def _ensure_session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            async with self._lock:
                if self._session is None or self._session.closed:
                    connector = aiohttp.TCPConnector(
                        ssl=self.ssl_context if self.ssl_context is not None else True, limit=64
                    )
                    self._session = aiohttp.ClientSession(connector=connector, timeout=self.timeout)
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
        text: bool = False,
        verb: str | None = None,
    ) -> Any:
        verb = verb or VERBS.get(method, method.lower())
        try:
            result = await self._request(method, path, body, params, content_type, text)
        except ApiError as exc:
            exc.verb, exc.resource = verb, _resource_of(path)
            if exc.transient:
                self._failing = True
            if self.observer is not None:
                self.observer.api_error(verb, exc.status)
            raise
        if self._failing:
            self._failing = False
            if self.on_recovered is not None:
                self.on_recovered()
        return result

    async def _request(
        self,
        method: str,
        path: str,
        body: Any,
        params: Mapping[str, str] | None,
        content_type: str,
        text: bool,
    ) -> Any:
        kwargs: dict[str, Any] = {"params": dict(params or {})}
        if body is not None:
            kwargs["json"] = body
        for attempt in (1, 2):
            session = await self._ensure_session()
            headers = {**self.headers, **({"Content-Type": content_type} if body is not None else {})}
            try:
                async with session.request(method, self.server + path, headers=headers, **kwargs) as resp:
                    if resp.status == 401 and attempt == 1 and self.relogin is not None:
                        info = self.relogin()
                        if info is not None:
                            self.headers = info.as_http_headers()
                            continue
                    if resp.status >= 400:
                        raise await _error(resp)
                    if text:
                        return await resp.text()
                    return await resp.json(content_type=None)
            except (TimeoutError, aiohttp.ClientConnectionError) as exc:
                raise ApiError(0, "Unreachable", f"{method} {path}: {exc or type(exc).__name__}") from exc
        raise ApiError(401, "Unauthorized", f"{method} {path}: credentials rejected after a fresh login")

    # -- verbs --------------------------------------------------------------------------------
    async def get(self, res: Resource, namespace: str | None, name: str) -> dict[str, Any]:
        return await self.request("GET", res.path(namespace, name))

    async def list(
        self, res: Resource, namespace: str | None = None, label_selector: str | None = None
    ) -> list[dict[str, Any]]:
        params = {"labelSelector": label_selector} if label_selector else None
        data = await self.request("GET", res.path(namespace), params=params, verb="list")
        return list(data.get("items") or [])

    async def create(self, res: Resource, namespace: str | None, body: Mapping[str, Any]) -> dict[str, Any]:
        return await self.request("POST", res.path(namespace), body=dict(body))

    async def patch(
        self,
        res: Resource,
        namespace: str | None,
        name: str,
        body: Any,
        *,
        subresource: str | None = None,
        content_type: str = MERGE,
    ) -> dict[str, Any]:
        return await self.request(
            "PATCH", res.path(namespace, name, subresource), body=body, content_type=content_type
        )

    async def delete(self, res: Resource, namespace: str | None, name: str) -> None:
        await self.request("DELETE", res.path(namespace, name), body={"propagationPolicy": "Background"})

    async def serves(self, res: Resource) -> bool:
        """Whether the API server serves ``res`` (discovery: its group/version lists the plural).

        Discovery is readable by every authenticated user (system:discovery), so no RBAC on CRDs."""
        base = f"/apis/{res.group}/{res.version}" if res.group else f"/api/{res.version}"
        try:
            listing = await self.request("GET", base)
        except ApiError as exc:
            if exc.not_found:
                return False
            raise
        return any(r.get("name") == res.plural for r in (listing or {}).get("resources") or [])

    async def pod_log(self, namespace: str, pod: str, container: str, tail_lines: int = 20) -> str:
        params = {"container": container, "tailLines": str(tail_lines)}
        return await self.request("GET", PODS.path(namespace, pod, "log"), params=params, text=True)


async def _error(resp: aiohttp.ClientResponse) -> ApiError:
    try:
        body = await resp.json(content_type=None)
    except Exception:
        body = {"message": (await resp.text())[:500]}
    if not isinstance(body, dict):
        body = {"message": str(body)[:500]}
    retry_after = retry_after_seconds(resp.headers.get("Retry-After"))
    if retry_after is None:  # the older form: a Status' details.retryAfterSeconds
        details = body.get("details")
        if isinstance(details, dict) and details.get("retryAfterSeconds") is not None:
            retry_after = retry_after_seconds(str(details["retryAfterSeconds"]))
    return ApiError(
        resp.status,
        str(body.get("reason") or resp.reason or ""),
        str(body.get("message") or ""),
        body,
        retry_after=retry_after,
    )


def _resource_of(path: str) -> str:
    """The plural (with a subresource) a request path names: ``.../jobs/x`` → ``jobs``."""
    parts = [p for p in path.split("?")[0].split("/") if p]
    if "namespaces" in parts:
        i = parts.index("namespaces")
        parts = parts[:i] + parts[i + 2 :]
    tail = parts[2:] if parts[:1] == ["api"] else parts[3:]
    if len(tail) >= 3:
        return f"{tail[0]}/{tail[2]}"
    return tail[0] if tail else path


def _ssl_context(info: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if info.ca_path:
        context.load_verify_locations(cafile=os.fspath(info.ca_path))
    elif info.ca_data:
        context.load_verify_locations(cadata=_pem(info.ca_data))
    if info.insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    cert = info.certificate_path or (_temp_pem(info.certificate_data) if info.certificate_data else None)
    key = info.private_key_path or (_temp_pem(info.private_key_data) if info.private_key_data else None)
    if cert:
        context.load_cert_chain(certfile=os.fspath(cert), keyfile=os.fspath(key) if key else None)
    return context


def _pem(data: str | bytes) -> str:
    """kubeconfig *-data fields are base64 of PEM; accept raw PEM too."""
    raw = data.encode() if isinstance(data, str) else data
    if raw.lstrip().startswith(b"-----"):
        return raw.decode()
    return base64.b64decode(raw).decode()


def _temp_pem(data: str | bytes) -> str:
    # ssl can only load client certificates from files; the file lives as long as the process.
    fd, path = tempfile.mkstemp(prefix="sft-operator-", suffix=".pem")
    with os.fdopen(fd, "w") as fh:
        fh.write(_pem(data))
    os.chmod(path, 0o600)
    return path
