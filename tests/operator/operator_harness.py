"""Names shared by the operator tests (the runner itself is sft_operator.testing)."""

from __future__ import annotations

import contextlib
from collections.abc import Callable

from kopf.testing import KopfRunner

from sft_operator.testing import TEST_IMAGE, run_operator

NAMESPACE = "default"
OperatorFactory = Callable[..., contextlib.AbstractContextManager[KopfRunner]]

__all__ = ["NAMESPACE", "TEST_IMAGE", "OperatorFactory", "run_operator"]
