"""``sftctl logs NAME [--node N | --worker I] [-f]``: the right pod's log, no pod names needed.

Pods are found by the label the operator puts on every child pod (``sft.dev/dataprep=<name>`` or
``sft.dev/run=<name>``, see ``render.meta.child_labels``). The pod is then chosen by:

* ``--worker I`` (SFTDataPrep): the Indexed Job's completion index I;
* ``--node N`` (SFTRun): node rank N — the Master is node 0, Worker replica i is node i+1 (the
  training-operator's ``RANK``, which the operator passes to torchrun as ``--node-rank``);
* neither: the pod the status blames (``status.failure.pod``) when the CR failed, else worker 0 /
  the Master.

Of several pods for one index (retries), the newest is shown.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any, TextIO

from sft_operator.api.meta import DATAPREP, RUN
from sft_operator.backends import Backend, named
from sft_operator.backends import pytorchjob as ptj
from sft_operator.ctl.cluster import KINDS_BY_NAME, Cluster, ClusterError
from sft_operator.render import dataprep as render_dataprep
from sft_operator.status.pods import pod_state


def run_backend(cr: Mapping[str, Any]) -> Backend:
    """The backend the run started on (``status.backend``; PyTorchJob for runs from before the seam)."""
    return named((cr.get("status") or {}).get("backend"))


def node_rank(pod: Mapping[str, Any], backend: Backend | None = None) -> int | None:
    """A JobSet/TrainJob pod's node rank is its completion index; a PyTorchJob's Master is node 0 and
    Worker replica i node i+1 (the default backend: runs from before ``status.backend``)."""
    backend = backend or named(None)
    state = pod_state(pod, backend.container, backend.role)
    if backend.name != ptj.name or state.replica_type is None or state.index is None:
        return state.index
    return state.index if state.replica_type.lower() == "master" else state.index + 1


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
        backend = run_backend(cr)
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
    container: str | None = render_dataprep.CONTAINER if info is DATAPREP else run_backend(cr).container
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    if container not in containers:
        container = containers[0] if containers else None
    print(f"# pod {pod['metadata']['name']} ({cluster.where})", file=sys.stderr)
    for chunk in cluster.log(pod["metadata"]["name"], container, follow, tail):
        out.write(chunk)
        out.flush()
    return 0
