"""Run the emulated apiserver on a free port in a background thread, with synchronous helpers.

The emulator owns its event loop on its own thread, so it serves kopf (which ``KopfRunner`` runs in
yet another thread), plain HTTP clients, subprocesses and synchronous test code alike. The helper
methods execute directly against the store on the emulator's loop (same semantics as HTTP, without
the round trip) and return deep copies, so tests never share mutable state with the server.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import copy
import threading
import time
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import kmock
import yaml

from . import jobset, trainer
from .errors import ApiError
from .patching import MERGE_PATCH
from .resources import ResourceDef, kopf_peering_crds, pytorchjob_crd
from .selectors import parse_field_selector, parse_label_selector
from .server import ApiServer
from .store import Json, Store

T = TypeVar("T")


class WaitTimeout(AssertionError):
    """``wait_for`` ran out of time; the message says what was awaited and the last value seen."""


def load_manifests(*sources: str | Path | Json | Iterable[Json]) -> list[Json]:
    """Documents from YAML files, directories of ``*.yaml`` files, dicts or lists of dicts."""
    documents: list[Json] = []
    for source in sources:
        if isinstance(source, dict):
            documents.append(source)
        elif isinstance(source, str | Path):
            path = Path(source)
            files = sorted(path.glob("*.yaml")) + sorted(path.glob("*.yml")) if path.is_dir() else [path]
            for file in files:
                documents += [doc for doc in yaml.safe_load_all(file.read_text()) if doc]
        else:
            documents += [doc for doc in source if doc]
    return documents


class KubeEmulator:
    """The emulated Kubernetes API server, started in a thread.

    ``validate_builtins`` checks built-in kinds against the official strict schemas (unknown or
    mistyped fields are a 422, as with server-side field validation); ``record_requests=False`` stops
    kmock from keeping every request; ``kopf_peering`` installs kopf's peering CRDs.

    Use as a context manager (or call :meth:`start`/:meth:`stop`)::

        with KubeEmulator(crds=["manifests/crds"]) as kube:
            kube.write_kubeconfig(tmp_path / "kubeconfig")
            kube.create({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}})
    """

    def __init__(
        self,
        crds: Iterable[str | Path | Json] = (),
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        record_requests: bool = True,
        kopf_peering: bool = False,
        validate_builtins: bool = True,
    ) -> None:
        self._initial_crds = list(crds)
        self._host = host
        self._port = port
        self._record_requests = record_requests
        self._kopf_peering = kopf_peering
        self._validate_builtins = validate_builtins
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopping: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self.server: ApiServer | None = None
        self._http: kmock.Server | None = None
        self.url = ""

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Self:
        self._thread = threading.Thread(target=self._run, name="kubeemu", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("kubeemu: the emulator did not start within 30 s")
        if self._startup_error is not None:
            raise RuntimeError("kubeemu: the emulator failed to start") from self._startup_error
        # The add-ons' admission webhooks (inert until their CRDs are installed), as their installs ship them.
        self.call(jobset.register_webhooks, self.store)
        self.call(trainer.register_webhooks, self.store)
        if self._kopf_peering:
            self.apply(kopf_peering_crds())
        if self._initial_crds:
            self.apply(load_manifests(*self._initial_crds))
        return self

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _serve(self) -> None:
        self._stopping = asyncio.Event()
        try:
            store = Store(validate_builtins=self._validate_builtins)
            self.server = ApiServer(store=store, record_requests=self._record_requests)
            self._http = kmock.Server(self.server, host=self._host, port=self._port)
            async with self.server, self._http:
                runner = getattr(self._http.server, "runner", None)
                if runner is not None and hasattr(runner, "_shutdown_timeout"):
                    # aiohttp waits up to 60 s for open handlers on shutdown; ours end on their own.
                    runner._shutdown_timeout = 2.0
                self.url = str(self._http.url).rstrip("/")
                self._ready.set()
                await self._stopping.wait()
                self.server.store.close_watchers()
                await asyncio.sleep(0.05)  # let the streams see their end before the sockets close
        except BaseException as error:
            self._startup_error = error
            self._ready.set()
            raise

    def stop(self) -> None:
        if self._loop is not None and self._stopping is not None and self._loop.is_running():
            self._loop.call_soon_threadsafe(self._stopping.set)
        if self._thread is not None:
            self._thread.join(30)
        self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---------------------------------------------------------------- plumbing

    @property
    def store(self) -> Store:
        """The live store; touch it only on the emulator loop (see :meth:`call`)."""
        assert self.server is not None, "the emulator is not started"
        return self.server.store

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "the emulator is not started"
        return self._loop

    def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run ``fn(*args, **kwargs)`` on the emulator loop; returns a deep copy of the result."""

        async def run() -> T:
            return copy.deepcopy(fn(*args, **kwargs))

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def submit(self, coro: Awaitable[T]) -> concurrent.futures.Future[T]:
        """Schedule a coroutine on the emulator loop (for background helpers like the pod runner)."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop)  # type: ignore[arg-type]

    def kubeconfig(self, namespace: str = "default") -> Json:
        """A kubeconfig dict pointing at this emulator (plain http, a dummy token)."""
        return {
            "apiVersion": "v1",
            "kind": "Config",
            "current-context": "kubeemu",
            "clusters": [{"name": "kubeemu", "cluster": {"server": self.url}}],
            "users": [{"name": "kubeemu", "user": {"token": "kubeemu-test-token"}}],
            "contexts": [
                {
                    "name": "kubeemu",
                    "context": {"cluster": "kubeemu", "user": "kubeemu", "namespace": namespace},
                }
            ],
        }

    def write_kubeconfig(self, path: str | Path, namespace: str = "default") -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.kubeconfig(namespace)))
        return path

    def _resource(self, kind: str, api_version: str | None) -> ResourceDef:
        return self.call(self.store.find, kind, api_version)

    # ---------------------------------------------------------------- helpers

    def apply(self, documents: str | Path | Json | Iterable[Json]) -> list[Json]:
        """Create each document, or replace it when it exists (like ``kubectl apply``, no merge)."""
        results: list[Json] = []
        for document in load_manifests(documents):
            results.append(self.call(self._apply_one, document))
        return results

    def _apply_one(self, document: Json) -> Json:
        store = self.store
        resource = store.find(document["kind"], document.get("apiVersion"))
        namespace = (document.get("metadata") or {}).get("namespace") or (
            "default" if resource.namespaced else None
        )
        name = document["metadata"]["name"]
        try:
            current = store.get(resource, namespace, name)
        except ApiError as error:
            if error.code != 404:
                raise
            return store.create(resource, namespace, document)
        body = copy.deepcopy(document)
        body.setdefault("metadata", {})["resourceVersion"] = current["metadata"]["resourceVersion"]
        return store.replace(resource, namespace, name, body)

    def create(self, body: Json, namespace: str | None = None) -> Json:
        """POST ``body``; the namespace comes from the argument, the body, or ``default``."""
        resource = self._resource(body["kind"], body.get("apiVersion"))
        namespace = namespace or (body.get("metadata") or {}).get("namespace")
        if resource.namespaced and namespace is None:
            namespace = "default"
        return self.call(self.store.create, resource, namespace, body)

    def get(
        self, kind: str, name: str, namespace: str | None = "default", api_version: str | None = None
    ) -> Json:
        """GET one object; raises :class:`~kubeemu.errors.ApiError` (404) when absent."""
        return self.call(self.store.get, self._resource(kind, api_version), namespace, name)

    def get_or_none(
        self, kind: str, name: str, namespace: str | None = "default", api_version: str | None = None
    ) -> Json | None:
        try:
            return self.get(kind, name, namespace, api_version)
        except ApiError as error:
            if error.code == 404:
                return None
            raise

    def list(
        self,
        kind: str,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        api_version: str | None = None,
    ) -> list[Json]:
        """Objects of a kind (all namespaces when ``namespace`` is None), optionally selected."""
        return self.call(
            self.store.list,
            self._resource(kind, api_version),
            namespace,
            parse_label_selector(label_selector),
            parse_field_selector(field_selector),
        )

    def patch(
        self,
        kind: str,
        name: str,
        patch: Any,
        namespace: str | None = "default",
        content_type: str = MERGE_PATCH,
        subresource: str | None = None,
        api_version: str | None = None,
    ) -> Json:
        resource = self._resource(kind, api_version)
        return self.call(self.store.patch, resource, namespace, name, content_type, patch, subresource)

    def patch_status(
        self,
        kind: str,
        name: str,
        status: Json,
        namespace: str | None = "default",
        api_version: str | None = None,
    ) -> Json:
        """Merge-patch ``.status`` through the status subresource (what controllers do)."""
        return self.patch(kind, name, {"status": status}, namespace, MERGE_PATCH, "status", api_version)

    def replace(self, body: Json, subresource: str | None = None) -> Json:
        """PUT the full object (``metadata.resourceVersion`` must be current)."""
        resource = self._resource(body["kind"], body.get("apiVersion"))
        body_meta = body["metadata"]
        return self.call(
            self.store.replace, resource, body_meta.get("namespace"), body_meta["name"], body, subresource
        )

    def delete(
        self,
        kind: str,
        name: str,
        namespace: str | None = "default",
        propagation: str | None = None,
        api_version: str | None = None,
    ) -> Json:
        """DELETE; ``propagation`` is Background/Foreground/Orphan (None: the kind's default)."""
        return self.call(self.store.delete, self._resource(kind, api_version), namespace, name, propagation)

    def create_namespace(self, name: str) -> Json:
        return self.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})

    def install_crd(self, crd: Json | str | Path) -> list[Json]:
        return self.apply(crd)

    def install_pytorchjob_crd(self) -> list[Json]:
        """Install a minimal ``kubeflow.org/v1`` PyTorchJob CRD (:func:`kubeemu.resources.pytorchjob_crd`)."""
        return self.apply(pytorchjob_crd())

    def install_jobset_crd(self) -> list[Json]:
        """Install JobSet's ``jobsets.jobset.x-k8s.io`` CRD (:func:`kubeemu.jobset.jobset_crd`)."""
        return self.apply(jobset.jobset_crd())

    def install_trainer_crds(self) -> list[Json]:
        """Install Kubeflow Trainer v2's TrainJob, ClusterTrainingRuntime and TrainingRuntime CRDs and
        JobSet's (Trainer runs on JobSet; :mod:`kubeemu.trainer`)."""
        return self.apply([jobset.jobset_crd(), *trainer.trainer_crds()])

    def uninstall_crd(self, name: str) -> Json:
        return self.delete("customresourcedefinitions", name, None)

    def events(self, namespace: str | None = None, involved_name: str | None = None) -> list[Json]:
        """Core v1 and events.k8s.io/v1 Events, optionally only those about ``involved_name``."""
        found = self.list("events", namespace, api_version="v1")
        found += self.list("events", namespace, api_version="events.k8s.io/v1")
        if involved_name is None:
            return found
        return [
            event
            for event in found
            if (event.get("involvedObject") or event.get("regarding") or {}).get("name") == involved_name
        ]

    def pod_log(self, name: str, namespace: str = "default", container: str | None = None) -> str:
        provider = self.store.log_provider
        if provider is None:
            return ""
        return self.call(provider, namespace, name, container, None) or ""

    @property
    def requests(self) -> ApiServer:
        """The kmock handler: iterate for recorded requests, or use ``<<`` to inject reactions."""
        assert self.server is not None
        return self.server

    # ---------------------------------------------------------------- waiting

    def wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        interval: float = 0.05,
        message: str = "condition",
    ) -> T:
        """Poll ``predicate`` until it returns a truthy value (returned) or time runs out.

        A 404 from a helper inside the predicate counts as "not yet".
        """
        deadline = time.monotonic() + timeout
        while True:
            last = _poll(predicate)
            if last:
                return last
            _check_deadline(deadline, timeout, message, last)
            time.sleep(interval)

    async def async_wait_for(
        self,
        predicate: Callable[[], T],
        timeout: float = 10.0,
        interval: float = 0.05,
        message: str = "condition",
    ) -> T:
        """Like :meth:`wait_for`, but yields to the caller's event loop between polls."""
        deadline = time.monotonic() + timeout
        while True:
            last = _poll(predicate)
            if last:
                return last
            _check_deadline(deadline, timeout, message, last)
            await asyncio.sleep(interval)

    def wait_for_object(
        self,
        kind: str,
        name: str,
        predicate: Callable[[Json], Any] = bool,
        namespace: str | None = "default",
        timeout: float = 10.0,
        api_version: str | None = None,
    ) -> Json:
        """Wait until the object exists and ``predicate(obj)`` is truthy; returns the object."""

        last_seen: list[Json | None] = [None]

        def check() -> Json | None:
            obj = last_seen[0] = self.get_or_none(kind, name, namespace, api_version)
            return obj if obj is not None and predicate(obj) else None

        try:
            return self.wait_for(check, timeout, message=f"{kind} {namespace}/{name}")
        except WaitTimeout as error:
            raise WaitTimeout(f"{error}; object now: {last_seen[0]!r}") from None

    def wait_for_deletion(
        self, kind: str, name: str, namespace: str | None = "default", timeout: float = 10.0
    ) -> None:
        self.wait_for(
            lambda: self.get_or_none(kind, name, namespace) is None,
            timeout,
            message=f"{kind} {namespace}/{name} to be deleted",
        )


def _poll(predicate: Callable[[], T]) -> T | None:
    """One look for the wait helpers: a 404 from a helper inside the predicate means "not yet"."""
    try:
        return predicate()
    except ApiError as error:
        if error.code != 404:
            raise
        return None


def _check_deadline(deadline: float, timeout: float, message: str, last: Any) -> None:
    if time.monotonic() >= deadline:
        raise WaitTimeout(f"timed out after {timeout}s waiting for {message}; last value: {last!r}")
