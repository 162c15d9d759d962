"""When the operator may write ``Job.spec.suspend`` (shared by Job and PyTorchJob ``runPolicy``).

Kueue suspends a queued Job itself (its webhook sets ``suspend: true`` at creation; admission sets it
back to false). If the operator copied ``spec.suspend: false`` onto the Job on every reconcile it would
start workloads Kueue has not admitted. The rule:

* at creation the child gets ``suspend = spec.suspend`` and the annotation ``sft.dev/suspend`` records
  the value written;
* afterwards the operator writes ``suspend`` only when ``spec.suspend`` differs from that annotation,
  i.e. only when the *user* changed ``spec.suspend``; Kueue's own changes to ``suspend`` never differ
  from the annotation, so they are left alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sft_operator.render.meta import SUSPEND_ANNOTATION


def suspend_patch(
    child: Mapping[str, Any], desired: bool, field: tuple[str, ...] = ("spec",)
) -> dict[str, Any] | None:
    """A merge patch for ``child`` when the user changed ``spec.suspend``; None when nothing to do.

    ``field`` is the path of the object holding ``suspend`` (``("spec",)`` for a Job,
    ``("spec", "runPolicy")`` for a PyTorchJob).
    """
    annotations = child.get("metadata", {}).get("annotations") or {}
    recorded = annotations.get(SUSPEND_ANNOTATION)
    wanted = "true" if desired else "false"
    if recorded == wanted:
        return None
    body: dict[str, Any] = {"suspend": desired}
    for key in reversed(field):
        body = {key: body}
    body["metadata"] = {"annotations": {SUSPEND_ANNOTATION: wanted}}
    return body
