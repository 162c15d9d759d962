"""Cluster networking as the local pod runner fakes it: every pod runs on this host (127.0.0.1).

On a cluster, a pod with ``hostname`` + ``subdomain`` under a headless Service (``clusterIP: None``)
gets the DNS names ``<hostname>.<subdomain>``, ``<hostname>.<subdomain>.<namespace>``,
``...svc`` and ``...svc.cluster.local`` (Kubernetes DNS for Services and Pods); JobSet relies on it
for ``<jobset>-<rjob>-<jobIndex>-<podIndex>.<subdomain>``, Trainer for ``PET_MASTER_ADDR``, an Indexed
Job whose pods name a Service as their subdomain for ``<job>-<index>.<subdomain>`` (the Job controller
sets each pod's hostname to ``<job>-<index>``: kubernetes pkg/controller/job/job_controller.go). Here no
DNS server exists, so such names in a container's env values and command/args are rewritten to
``127.0.0.1`` when the container starts (the way the PyTorchJob emulation injects
``MASTER_ADDR=localhost``). Only names of pods that exist (or that a JobSet will create) under a
headless Service are rewritten, so a file named ``train.py`` survives a JobSet named ``py``.

Ports: on a cluster each pod has its own IP, so every JobSet can use the same rendezvous port
(Trainer's ``PET_MASTER_PORT`` is always 29500). Here all pods share one address, so two JobSets (or
two tests in parallel, or the old and the new attempt of a restarting JobSet whose processes are still
dying) would collide. The env values named in :data:`PORT_VARIABLES` of a JobSet pod are therefore
replaced by one free local port per JobSet uid and ``jobset.sigs.k8s.io/restart-attempt``: every
pod of an attempt agrees on it, and a restart gets a fresh one. The pods of an Indexed Job under a
headless Service get one port per Job uid the same way (a group restarted by replacing its Job gets
a fresh one). A port given literally in the command line (not through one of these variables) is
left alone.
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

    def _hosts(self, namespace: str) -> dict[str, set[str]]:
        """Headless Service name -> the pod hostnames it gives DNS names to (``spec.subdomain``).

        Pods that exist, plus every pod a JobSet of that subdomain will create
        (``<jobset>-<rjob>-<jobIndex>-<podIndex>``), so a container that starts before its peers'
        pods exist still finds them (a real resolver would retry until they do).
        """
        services = self.store.resources.get(("", "services"))
        if services is None:
            return {}
        hosts: dict[str, set[str]] = {
            svc["metadata"]["name"]: set()
            for svc in self.store.list(services, namespace)
            if (svc.get("spec") or {}).get("clusterIP") == "None"
        }
        if not hosts:
            return hosts
        for pod in self.store.list(self.store.resources[("", "pods")], namespace):
            spec = pod.get("spec") or {}
            if spec.get("subdomain") in hosts:
                hosts[spec["subdomain"]].add(spec.get("hostname") or pod["metadata"]["name"])
        jobsets = self.store.resources.get(("jobset.x-k8s.io", "jobsets"))
        for jobset in self.store.list(jobsets, namespace) if jobsets is not None else []:
            spec = jobset.get("spec") or {}
            name = jobset["metadata"]["name"]
            subdomain = (spec.get("network") or {}).get("subdomain") or name
            if subdomain not in hosts:
                continue
            for rjob in spec.get("replicatedJobs") or []:
                job_spec = (rjob.get("template") or {}).get("spec") or {}
                pods = int(job_spec.get("completions") or job_spec.get("parallelism") or 1)
                for job_index in range(int(rjob.get("replicas", 1))):
                    hosts[subdomain].update(f"{name}-{rjob['name']}-{job_index}-{i}" for i in range(pods))
        for job in self.store.list(self.store.resources[("batch", "jobs")], namespace):
            spec = job.get("spec") or {}
            subdomain = (((spec.get("template") or {}).get("spec")) or {}).get("subdomain")
            if subdomain in hosts and spec.get("completionMode") == "Indexed":
                name = job["metadata"]["name"]
                hosts[subdomain].update(f"{name}-{i}" for i in range(int(spec.get("completions") or 1)))
        return hosts

    def resolve(self, text: str, namespace: str) -> str:
        """``<hostname>.<service>[.<namespace>[.svc[.cluster.local]]]`` -> 127.0.0.1 for the pods of
        headless Services (:meth:`_hosts`); anything else is left as it is."""
        return self.resolve_all([text], namespace)[0]

    def resolve_all(self, texts: list[str], namespace: str) -> list[str]:
        if not any("." in text for text in texts):
            return list(texts)
        names = [
            re.escape(f"{host}.{service}")
            for service, hostnames in self._hosts(namespace).items()
            for host in hostnames
        ]
        if not names:
            return list(texts)
        pattern = re.compile(
            r"(?:(?<=//)|(?<![\w./-]))(?:" + "|".join(sorted(names, key=len, reverse=True)) + r")"
            r"(?:\." + re.escape(namespace) + r"(?:\.svc(?:\.cluster\.local)?)?)?(?![\w-]|\.[\w-])"
        )
        return [pattern.sub(LOCAL_ADDRESS, text) for text in texts]

    def port_for(self, pod: Json) -> int | None:
        labels = pod["metadata"].get("labels") or {}
        uid = labels.get(JOBSET_UID)
        if uid:
            key = (uid, labels.get(RESTART_ATTEMPT, "0"))
        elif (pod.get("spec") or {}).get("subdomain"):
            owner = next(
                (r for r in pod["metadata"].get("ownerReferences") or [] if r.get("controller")), None
            )
            if owner is None or owner.get("kind") != "Job":
                return None
            key = (owner["uid"], "0")
        else:
            return None
        if key not in self._ports:
            self._ports[key] = free_port()
        return self._ports[key]

    def localize_env(self, pod: Json, env: Mapping[str, str]) -> dict[str, str]:
        namespace = pod["metadata"]["namespace"]
        result = dict(zip(env, self.resolve_all(list(env.values()), namespace), strict=True))
        port = self.port_for(pod)
        if port is not None:
            for name in PORT_VARIABLES:
                if name in result:
                    result[name] = str(port)
        return result
