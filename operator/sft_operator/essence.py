"""kopf without change detection: the operator has no use for the "essence" kopf builds per event.

kopf prepares every watch event for change handlers (``@kopf.on.create/update/field``): it deep-copies
the body into an "essence" (the object without status and system fields) and compares it with the
last handled one stored in an annotation. This operator registers no change handler (only indexes
and ``@kopf.on.event`` triggers of the work queue, see :mod:`sft_operator.handlers`), so nothing reads
that essence or its diff; building it was a third of kopf's CPU per event (issue 23's profile). With
:class:`NoEssence` as ``settings.persistence.diffbase_storage`` the essence is never built and the
diff is always empty, which is what kopf computes for an operator without change handlers anyway.
Nothing is stored on the objects (``store`` is only called after a change handler ran).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import kopf


class NoEssence(kopf.DiffBaseStorage):
    """A diff-base storage that builds, fetches and stores nothing (see the module doc)."""

    def build(self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None) -> kopf.BodyEssence:
        return None  # type: ignore[return-value]  # kopf skips a None essence (processing._detect_causes)

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return None

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        return None
