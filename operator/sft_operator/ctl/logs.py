"""``sftctl logs NAME [--node N | --worker I] [-f]``: the right pod's log, no pod names needed.

Pods are found by the label the operator puts on every child pod (``sft.dev/dataprep=<name>`` or
``sft.dev/run=<name>``, see ``render.meta.child_labels``). The pod is then chosen by:

* ``--worker I`` (SFTDataPrep): the Indexed Job's completion index I;
* ``--node N`` (SFTRun): node rank N, as the run's backend numbers its pods (``Backend.node_rank``:
  the completion index, or the replica type and index);
* neither: the pod the status blames (``status.failure.pod``) when the CR failed, else worker 0 /
  node 0.

Of several pods for one index (retries), the newest is shown.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from sft_operator import backends
from sft_operator.api.meta import DATAPREP, RUN
from sft_operator.backends.base import Backend
from sft_operator.ctl.cluster import KINDS_BY_NAME, Cluster, ClusterError
from sft_operator.render import dataprep as render_dataprep
from sft_operator.status.pods import pod_state


def run_backend(cr: Mapping[str, Any], pods: list[dict[str, Any]] | None = None) -> Backend | None:
    """The backend the run started on: ``status.backend``, else (a run from before it was recorded)
    the backend whose child owns its pods; None when neither says."""
    recorded = backends.recorded(cr.get("status"))
    return recorded or next((b for p in pods or [] if (b := backends.of_pod(p)) is not None), None)


def node_rank(pod: Mapping[str, Any], backend: Backend | None) -> int | None:
    """The pod's node rank as its backend numbers it (its index when the run records no backend)."""
    if backend is None:
        return pod_state(pod, "").index
    return backend.node_rank(pod_state(pod, backend.container, backend.role))


def worker_index(pod: Mapping[str, Any]) -> int | None:
    return pod_state(pod, render_dataprep.CONTAINER).index


def choose_pod(
    cr: Mapping[str, Any], pods: list[dict[str, Any]], node: int | None, worker: int | None
) -> dict[str, Any]:
    kind = cr.get("kind")
    name = cr["metadata"]["name"]
    if not pods:
        phase = (cr.get("status") or {}).get("phase")
        raise ClusterError(
            f"{kind}/{name} has no pods (phase {phase or 'unknown'}); `sftctl describe {name}`"
        )
    if kind == DATAPREP.kind:
        if node is not None:
            raise ClusterError(f"{kind}/{name}: --node is for SFTRun; an SFTDataPrep has --worker I")
        index_of, wanted, what = worker_index, worker, "worker"
    else:
        if worker is not None:
            raise ClusterError(f"{kind}/{name}: --worker is for SFTDataPrep; an SFTRun has --node N")
        backend = run_backend(cr, pods)
        index_of, wanted, what = (lambda pod: node_rank(pod, backend)), node, "node"
    if wanted is None:
        blamed = ((cr.get("status") or {}).get("failure") or {}).get("pod")
        match = [p for p in pods if p["metadata"]["name"] == blamed]
        if match:
            return match[-1]
        wanted = 0
    match = [p for p in pods if index_of(p) == wanted]
    if not match:
        have = sorted({i for p in pods if (i := index_of(p)) is not None})
        raise ClusterError(f"{kind}/{name} has no pod for {what} {wanted} (it has {what}s {have})")
    return match[-1]


def run(
    cluster: Cluster,
    text: str,
    node: int | None,
    worker: int | None,
    follow: bool,
    tail: int | None,
    out: TextIO | None = None,
) -> int:
    from sft_operator.ctl.cluster import find

    out = out or sys.stdout
    want = RUN if node is not None else (DATAPREP if worker is not None else None)
    crs = find(cluster, text, want=want)
    if len(crs) > 1:
        names = " or ".join(f"{c['kind'].lower()}/{c['metadata']['name']}" for c in crs)
        raise ClusterError(f"{text} names both an SFTDataPrep and an SFTRun; say which: sftctl logs {names}")
    (cr,) = crs
    info = KINDS_BY_NAME[cr["kind"].lower()]
    pod = choose_pod(cr, cluster.pods_of(info, cr["metadata"]["name"]), node, worker)
    backend = run_backend(cr, [pod])
    container: str | None = (
        render_dataprep.CONTAINER if info is DATAPREP or backend is None else backend.container
    )
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if container not in containers:
        container = containers[0] if containers else None
    print(f"# pod {pod['metadata']['name']} ({cluster.where})", file=sys.stderr)
    for chunk in cluster.log(pod["metadata"]["name"], container, follow, tail):
        out.write(chunk)
        out.flush()
    return 0
