"""The runs ``sftctl run --local`` wrote, read as a cluster is read: ``sftctl get/describe/logs/watch
--local [--workdir DIR]`` print them with the very printers they use for a cluster.

:class:`LocalRuns` is a read-only :class:`~sft_operator.ctl.cluster.Cluster` over the work dir: the
CRs are ``DIR/<kind>/<name>/status.json`` (namespace ``local``); their "pods" are the processes of
``processes.json`` (the run's last :class:`~sft_operator.ctl.processes.LocalProcesses`), each shown as
a Pod with its index and phase, and its log is ``<process>.log`` beside it; ``get``'s Table is made
here as the API server makes it for a CRD (a Name column, then the kind's printer columns from
:mod:`sft_operator.api.meta`; apiextensions-apiserver tableconvertor.go: a ``date`` column as a
human age, a missing value as null).
"""

from __future__ import annotations

import builtins
import json
import re
import time
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sft_common.progress import human_duration, parse_time
from sft_operator.api.meta import KindInfo
from sft_operator.ctl.cluster import Cluster, ClusterError
from sft_operator.ctl.processes import LocalProcesses
from sft_operator.status.pods import JOB_INDEX_ANNOTATION

NAMESPACE = "local"
STATUS_FILE = "status.json"
"""The CR, status included, as ``sftctl run --local`` last wrote it."""
PROCESSES_FILE = "processes.json"
"""Its processes as last seen (:meth:`LocalProcesses.to_json`)."""
_FILTER = re.compile(r'^(\w+)\[\?\(@\.(\w+)=="([^"]*)"\)\]$')


class LocalRuns(Cluster):
    """The CRs of a local work dir, as :class:`Cluster` reads a namespace (writes are refused)."""

    def __init__(self, workdir: Path) -> None:
        super().__init__(api_client=None, context="local", namespace=NAMESPACE)
        self.workdir = workdir

    @property
    def where(self) -> str:
        return f"local runs in {self.workdir}"

    def _folder(self, info: KindInfo, name: str) -> Path:
        return self.workdir / info.singular / name

    def get(self, info: KindInfo, name: str) -> dict[str, Any] | None:
        path = self._folder(info, name) / STATUS_FILE
        return dict(json.loads(path.read_text())) if path.is_file() else None

    def list(
        self, info: KindInfo, *, all_namespaces: bool = False, selector: str | None = None
    ) -> builtins.list[dict[str, Any]]:
        if selector:
            raise ClusterError(f"-l is not supported for {self.where}; name the runs instead")
        paths = sorted((self.workdir / info.singular).glob(f"*/{STATUS_FILE}"))
        return [dict(json.loads(p.read_text())) for p in paths]

    def table(
        self,
        info: KindInfo,
        name: str | None = None,
        *,
        all_namespaces: bool = False,
        selector: str | None = None,
    ) -> dict[str, Any]:
        items = (
            self.list(info, selector=selector) if name is None else [o for o in [self.get(info, name)] if o]
        )
        return to_table(items, info.printer_columns)

    def delete(self, info: KindInfo, name: str, namespace: str | None = None) -> bool:
        raise ClusterError(f"{self.where} are not on a cluster: remove {self._folder(info, name)} instead")

    def apply(self, info: KindInfo, body: Mapping[str, Any]) -> tuple[dict[str, Any], bool]:
        raise ClusterError(f"{self.where} are read-only: run the file with `sftctl run --local -f FILE`")

    def pods_of(self, info: KindInfo, name: str) -> builtins.list[dict[str, Any]]:
        """The CR's processes as Pods: name, index (as a Job's pod carries it) and phase."""
        path = self._folder(info, name) / PROCESSES_FILE
        if not path.is_file():
            return []
        seen = LocalProcesses.from_json(json.loads(path.read_text()))
        pods = []
        for process, state in zip(seen.processes, seen.pods(replica_type=None), strict=True):
            pods.append(
                {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "metadata": {
                        "name": process.name,
                        "namespace": NAMESPACE,
                        "annotations": {JOB_INDEX_ANNOTATION: str(process.index)},
                    },
                    "status": {"phase": state.phase},
                }
            )
        return pods

    def log(self, pod: str, container: str | None, follow: bool, tail: int | None) -> Iterator[str]:
        matches = sorted(self.workdir.glob(f"*/*/{pod}.log"))
        if not matches:
            raise ClusterError(f"no log of process {pod} in {self.workdir}")
        path = matches[0]
        lines = path.read_text(errors="replace").splitlines(keepends=True)
        yield "".join(lines[-tail:] if tail is not None else lines)
        if not follow:
            return
        with path.open(errors="replace") as stream:
            stream.seek(0, 2)
            while True:
                chunk = stream.read()
                if chunk:
                    yield chunk
                elif self._ended(path):
                    return
                else:
                    time.sleep(0.5)

    def _ended(self, log: Path) -> bool:
        """The process of ``log`` has exited (its run recorded it)."""
        path = log.parent / PROCESSES_FILE
        if not path.is_file():
            return True
        seen = LocalProcesses.from_json(json.loads(path.read_text()))
        return all(p.exit_code is not None for p in seen.processes if f"{p.name}.log" == log.name)


def to_table(items: builtins.list[dict[str, Any]], columns: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    """The meta.k8s.io/v1 Table the API server gives ``kubectl get`` for these CRs."""
    now = datetime.now(UTC)
    definitions = [{"name": "Name", "type": "string", "format": "name", "priority": 0}]
    definitions += [
        {"name": c["name"], "type": c["type"], "format": "", "priority": int(c.get("priority") or 0)}
        for c in columns
    ]
    rows = []
    for obj in items:
        cells: builtins.list[Any] = [obj["metadata"]["name"]]
        cells += [_cell(c["type"], _find(obj, c["jsonPath"]), now) for c in columns]
        rows.append({"cells": cells, "object": {"metadata": obj["metadata"]}})
    return {"kind": "Table", "apiVersion": "meta.k8s.io/v1", "columnDefinitions": definitions, "rows": rows}


def _find(obj: Any, path: str) -> Any:
    """A printer column's JSONPath: ``.a.b`` and ``.list[?(@.key=="value")].c`` (the forms the
    kinds' columns use); None when absent."""
    for part in path.lstrip(".").split("."):
        match = _FILTER.match(part)
        if match:
            items = obj.get(match.group(1)) if isinstance(obj, Mapping) else None
            obj = next(
                (
                    i
                    for i in items or []
                    if isinstance(i, Mapping) and i.get(match.group(2)) == match.group(3)
                ),
                None,
            )
        else:
            obj = obj.get(part) if isinstance(obj, Mapping) else None
        if obj is None:
            return None
    return obj


def _cell(kind: str, value: Any, now: datetime) -> Any:
    if value is None:
        return None
    if kind == "date":
        then = parse_time(str(value))
        return human_duration((now - then).total_seconds()) if then is not None else "<invalid>"
    if kind == "number" and isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if kind == "string" and not isinstance(value, str):
        return json.dumps(value)
    return value
