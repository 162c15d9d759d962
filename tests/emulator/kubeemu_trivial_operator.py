"""A trivial kopf operator used to prove that real kopf runs against the emulator."""

from __future__ import annotations

from typing import Any

import kopf


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    settings.watching.server_timeout = 30


@kopf.on.create("example.com", "v1", "widgets")
def widget_created(body: kopf.Body, spec: kopf.Spec, patch: kopf.Patch, **_: Any) -> None:
    kopf.info(body, reason="Started", message=f"size {spec['size']}")  # a core v1 Event
    patch.status["phase"] = "Running"
    patch.status["progress"] = {"seenSize": spec["size"]}


@kopf.on.delete("example.com", "v1", "widgets")
def widget_deleted(body: kopf.Body, **_: Any) -> None:
    # A delete handler makes kopf put its finalizer on widgets: exercises deletionTimestamp + finalizers.
    kopf.info(body, reason="Deleting", message="cleaning up")


@kopf.on.update("example.com", "v1", "widgets", field="spec.size")
def widget_resized(new: int, patch: kopf.Patch, **_: Any) -> None:
    patch.status["progress"] = {"seenSize": new}
