"""Cluster networking as the local pod runner fakes it: every pod runs on this host (127.0.0.1).

On a cluster, a pod with ``hostname`` + ``subdomain`` under a headless Service (``clusterIP: None``)
gets the DNS names ``<hostname>.<subdomain>``, ``<hostname>.<subdomain>.<namespace>``,
``...svc`` and ``...svc.cluster.local`` (Kubernetes DNS for Services and Pods); JobSet relies on it
for ``<jobset>-<rjob>-<jobIndex>-<podIndex>.<subdomain>``, Trainer for ``PET_MASTER_ADDR``. Here no
DNS server exists, so such names in a container's env values and command/args are rewritten to
``127.0.0.1`` when the container starts (the way the PyTorchJob emulation injects
``MASTER_ADDR=localhost``).

Ports: on a cluster each pod has its own IP, so every JobSet can use the same rendezvous port
(Trainer's ``PET_MASTER_PORT`` is always 29500). Here all pods share one address, so two JobSets (or
two tests in parallel, or the old and the new attempt of a restarting JobSet whose processes are still
dying) would collide. The env values named in :data:`PORT_VARIABLES` of a JobSet pod are therefore
replaced by one free local port per JobSet uid and ``jobset.sigs.k8s.io/restart-attempt``: every
pod of an attempt agrees on it, and a restart gets a fresh one. A port given literally in the
command line (not through one of these variables) is left alone.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Mapping

from .store import Json, Store

LOCAL_ADDRESS = "127.0.0.1"
PORT_VARIABLES = ("MASTER_PORT", "PET_MASTER_PORT")
JOBSET_UID = "jobset.sigs.k8s.io/jobset-uid"
RESTART_ATTEMPT = "jobset.sigs.k8s.io/restart-attempt"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((LOCAL_ADDRESS, 0))
        return int(sock.getsockname()[1])


class LocalNetwork:
    """Resolves pod DNS names to 127.0.0.1 and gives each JobSet attempt its own rendezvous port."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._ports: dict[tuple[str, str], int] = {}

    def _headless_services(self, namespace: str) -> list[str]:
        resource = self.store.resources.get(("", "services"))
        if resource is None:
            return []
        return [
            svc["metadata"]["name"]
            for svc in self.store.list(resource, namespace)
            if (svc.get("spec") or {}).get("clusterIP") == "None"
        ]

    def resolve(self, text: str, namespace: str) -> str:
        """``<label>.<service>[.<namespace>[.svc[.cluster.local]]]`` -> 127.0.0.1 (headless Services)."""
        services = self._headless_services(namespace)
        if not services or "." not in text:
            return text
        names = "|".join(re.escape(name) for name in sorted(services, key=len, reverse=True))
        pattern = re.compile(
            r"(?<![\w.-])[a-z0-9]([-a-z0-9]*[a-z0-9])?\.(?:" + names + r")"
            r"(?:\." + re.escape(namespace) + r"(?:\.svc(?:\.cluster\.local)?)?)?(?![\w-]|\.[\w-])"
        )
        return pattern.sub(LOCAL_ADDRESS, text)

    def port_for(self, pod: Json) -> int | None:
        labels = pod["metadata"].get("labels") or {}
        uid = labels.get(JOBSET_UID)
        if not uid:
            return None
        key = (uid, labels.get(RESTART_ATTEMPT, "0"))
        if key not in self._ports:
            self._ports[key] = free_port()
        return self._ports[key]

    def localize_env(self, pod: Json, env: Mapping[str, str]) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        result = {name: self.resolve(value, namespace) for name, value in env.items()}
        port = self.port_for(pod)
        if port is not None:
            for name in PORT_VARIABLES:
                if name in result:
                    result[name] = str(port)
        return result
