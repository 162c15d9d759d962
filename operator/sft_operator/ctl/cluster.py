"""The cluster, through the official ``kubernetes`` client, configured the way kubectl is.

Configuration: ``--kubeconfig`` (else ``$KUBECONFIG``, else ``~/.kube/config``) and ``--context``;
inside a pod without a kubeconfig, the in-cluster ServiceAccount. The namespace: ``-n``, else the
context's namespace, else the pod's namespace in-cluster, else ``default``. Every error names the
context and namespace used, so "which cluster did that go to?" never needs asking.
"""

from __future__ import annotations

import builtins
import json
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sft_operator.api.meta import DATAPREP, GROUP, RUN, VERSION, KindInfo
from sft_operator.render.meta import label_value

IN_CLUSTER_NAMESPACE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
FIELD_MANAGER = "sftctl"
TABLE_ACCEPT = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
"""What ``kubectl get`` accepts: the server-side Table, else the plain object."""


class ClusterError(RuntimeError):
    """A cluster call failed; the message names the context and namespace used and what to do."""


def _import_kubernetes() -> Any:
    try:
        import kubernetes
    except ImportError:
        raise ClusterError(
            "the kubernetes Python client is not installed: pip install 'sft-operator[ctl]'"
        ) from None
    return kubernetes


@dataclass
class Cluster:
    """A connected API client plus where it points."""

    api_client: Any
    context: str
    namespace: str

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, context: str | None = None, namespace: str | None = None
    ) -> Cluster:
        k8s = _import_kubernetes()
        from kubernetes import config as kconfig

        path = kubeconfig or os.environ.get("KUBECONFIG") or str(Path("~/.kube/config").expanduser())
        first = path.split(os.pathsep)[0]
        if kubeconfig or Path(first).exists():
            try:
                contexts, active = kconfig.list_kube_config_contexts(config_file=first)
                chosen = next((c for c in contexts if c["name"] == context), None) if context else active
                if context and chosen is None:
                    names = ", ".join(c["name"] for c in contexts) or "none"
                    raise ClusterError(f"context {context!r} is not in {first} (contexts: {names})")
                client = kconfig.new_client_from_config(config_file=first, context=context)
            except ClusterError:
                raise
            except Exception as exc:
                raise ClusterError(
                    f"cannot load kubeconfig {first} (context {context or 'current'}): {exc}"
                ) from None
            ctx_name = (chosen or {}).get("name", context or "?")
            ctx_ns = ((chosen or {}).get("context") or {}).get("namespace")
            return cls(client, ctx_name, namespace or ctx_ns or "default")
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            try:
                kconfig.load_incluster_config()
            except Exception as exc:
                raise ClusterError(f"in-cluster config failed: {exc}") from None
            ns = namespace
            if ns is None and Path(IN_CLUSTER_NAMESPACE).exists():
                ns = Path(IN_CLUSTER_NAMESPACE).read_text().strip()
            return cls(k8s.client.ApiClient(), "in-cluster", ns or "default")
        raise ClusterError(
            f"no kubeconfig ({first} does not exist, KUBECONFIG is unset) and not inside a cluster; "
            "pass --kubeconfig, set KUBECONFIG, or use `sftctl run --local` to run without a cluster"
        )

    @property
    def where(self) -> str:
        return f"context {self.context}, namespace {self.namespace}"

    def _fail(self, what: str, exc: Exception) -> ClusterError:
        status = getattr(exc, "status", None)
        reason = getattr(exc, "reason", None) or type(exc).__name__
        body = getattr(exc, "body", None)
        detail = ""
        if body:
            try:
                detail = json.loads(body).get("message") or ""
            except (ValueError, AttributeError):
                detail = str(body)[:300]
        hint = ""
        if (status == 404 and "sftdataprep" in what.lower()) or (status == 404 and "sftrun" in what.lower()):
            hint = "; is it there (sftctl get) and are the CRDs installed (helm install sft-operator)?"
        elif status in (401, 403):
            hint = "; check your credentials and RBAC for this namespace"
        elif status is None:
            hint = "; is the API server reachable?"
        code = f"{status} " if status else ""
        return ClusterError(
            f"{what} failed ({self.where}): {code}{reason}{': ' + detail if detail else ''}{hint}"
        )

    # -- custom resources ----------------------------------------------------------------------
    @property
    def custom(self) -> Any:
        from kubernetes import client

        return client.CustomObjectsApi(self.api_client)

    @property
    def core(self) -> Any:
        from kubernetes import client

        return client.CoreV1Api(self.api_client)

    def get(self, info: KindInfo, name: str) -> dict[str, Any] | None:
        try:
            return self.custom.get_namespaced_custom_object(GROUP, VERSION, self.namespace, info.plural, name)
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return None
            raise self._fail(f"get {info.kind}/{name}", exc) from None

    def list(
        self, info: KindInfo, *, all_namespaces: bool = False, selector: str | None = None
    ) -> list[dict[str, Any]]:
        """This namespace's CRs of a kind (every namespace's with ``all_namespaces``, as ``kubectl get
        -A``), optionally only those matching a label ``selector`` (``-l``, the API server's syntax)."""
        kwargs: dict[str, Any] = {"label_selector": selector} if selector else {}
        try:
            if all_namespaces:
                body = self.custom.list_cluster_custom_object(GROUP, VERSION, info.plural, **kwargs)
            else:
                body = self.custom.list_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, info.plural, **kwargs
                )
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return []  # the CRD is not installed: nothing of this kind
            raise self._fail(f"list {info.plural}", exc) from None
        items = body.get("items") or []
        for item in items:  # list items carry no kind
            item.setdefault("kind", info.kind)
            item.setdefault("apiVersion", info.api_version)
        return sorted(items, key=lambda o: (o["metadata"].get("namespace") or "", o["metadata"]["name"]))

    def table(
        self,
        info: KindInfo,
        name: str | None = None,
        *,
        all_namespaces: bool = False,
        selector: str | None = None,
    ) -> dict[str, Any]:
        """The API server's Table of this kind (``name``: of that one CR), as ``kubectl get`` asks for
        it: the CRD's printer columns, computed by the server. No CRD installed: an empty Table."""
        where = "" if all_namespaces else f"/namespaces/{self.namespace}"
        path = f"/apis/{GROUP}/{VERSION}{where}/{info.plural}" + (f"/{name}" if name else "")
        try:
            response = self.api_client.call_api(
                path,
                "GET",
                query_params=[("labelSelector", selector)] if selector else [],
                header_params={"Accept": TABLE_ACCEPT},
                auth_settings=["BearerToken"],
                _return_http_data_only=True,
                _preload_content=False,  # the raw body: the client has no model for a Table
            )
            return dict(json.loads(response.data))
        except Exception as exc:
            if getattr(exc, "status", None) == 404 and name is None:
                return {"columnDefinitions": [], "rows": []}
            raise self._fail(f"get {info.plural}{'/' + name if name else ''}", exc) from None

    def delete(self, info: KindInfo, name: str, namespace: str | None = None) -> bool:
        """Delete one CR (background propagation, kubectl's default: the operator's children go with
        it through their ownerReferences); False when there was none."""
        try:
            self.custom.delete_namespaced_custom_object(
                GROUP,
                VERSION,
                namespace or self.namespace,
                info.plural,
                name,
                propagation_policy="Background",
            )
        except Exception as exc:
            if getattr(exc, "status", None) == 404:
                return False
            raise self._fail(f"delete {info.kind}/{name}", exc) from None
        return True

    def apply(self, info: KindInfo, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        """Server-side apply (field manager ``sftctl``, as ``kubectl apply --server-side``); returns the
        object and whether it was created."""
        name = body["metadata"]["name"]
        obj = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        if self.get(info, name) is None:
            try:
                created = self.custom.create_namespaced_custom_object(
                    GROUP, VERSION, self.namespace, info.plural, obj, field_manager=FIELD_MANAGER
                )
                return created, True
            except Exception as exc:
                if getattr(exc, "status", None) != 409:  # created meanwhile: apply over it
                    raise self._fail(f"create {info.kind}/{name}", exc) from None
        try:
            out = self.custom.patch_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                info.plural,
                name,
                obj,
                field_manager=FIELD_MANAGER,
                force=True,
                _content_type="application/apply-patch+yaml",
            )
        except Exception as exc:
            raise self._fail(f"apply {info.kind}/{name}", exc) from None
        return out, False

    # -- pods ----------------------------------------------------------------------------------
    def pods_of(self, info: KindInfo, name: str) -> builtins.list[dict[str, Any]]:
        """The CR's pods, by the label the operator puts on them (``sft.dev/<kind>=<name>``)."""
        selector = f"{info.label_key}={label_value(name)}"
        try:
            body = self.core.list_namespaced_pod(self.namespace, label_selector=selector)
        except Exception as exc:
            raise self._fail(f"list pods {selector}", exc) from None
        pods = self.api_client.sanitize_for_serialization(body).get("items") or []
        return sorted(pods, key=lambda p: p["metadata"].get("creationTimestamp") or "")

    def log(self, pod: str, container: str | None, follow: bool, tail: int | None) -> Iterator[str]:
        kwargs: dict[str, Any] = {"container": container, "follow": follow, "_preload_content": False}
        if tail is not None:
            kwargs["tail_lines"] = tail
        try:
            response = self.core.read_namespaced_pod_log(pod, self.namespace, **kwargs)
        except Exception as exc:
            raise self._fail(f"logs of pod {pod}", exc) from None
        try:
            for chunk in response.stream(1024):
                yield chunk.decode(errors="replace")
        finally:
            response.release_conn()


KINDS_BY_NAME: dict[str, KindInfo] = {}
for _info in (DATAPREP, RUN):
    for _alias in (_info.kind, _info.plural, _info.singular, *_info.short_names):
        KINDS_BY_NAME[_alias.lower()] = _info


def parse_ref(text: str) -> tuple[KindInfo | None, str]:
    """``NAME`` or ``KIND/NAME`` (kind: SFTRun, sftruns, sftr, sftdataprep, sftdp, dataprep ...)."""
    kind, sep, name = text.partition("/")
    if not sep:
        return None, text
    info = KINDS_BY_NAME.get(kind.lower())
    if info is None:
        raise ClusterError(f"unknown kind {kind!r} in {text!r}; use sftdataprep/NAME or sftrun/NAME")
    return info, name


def find(cluster: Cluster, text: str, *, want: KindInfo | None = None) -> list[dict[str, Any]]:
    """The CRs ``text`` names (one per kind when a bare name matches both); error when none."""
    info, name = parse_ref(text)
    kinds = [info] if info else ([want] if want else [DATAPREP, RUN])
    found: list[dict[str, Any]] = []
    for k in kinds:
        obj = cluster.get(k, name)
        if obj is not None:
            obj.setdefault("kind", k.kind)
            found.append(obj)
    if not found:
        what = " or ".join(k.kind for k in kinds)
        raise ClusterError(f"no {what} named {name} ({cluster.where}); `sftctl get` lists what there is")
    return found
