"""Run the real operator in-process (kopf's ``KopfRunner``) for tests, e2e tests and benchmarks.

Every test suite and the benchmarks start the operator the same way through this module (tests/ is
on their import path): standalone (no peering), namespace-scoped, short watch timeouts and retries.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

import kopf
from kopf.testing import KopfRunner

from sft_operator.handlers import OperatorConfig, build_registry
from sft_operator.render.pods import WorkloadDefaults

TEST_IMAGE = "ghcr.io/sft-operator/sft-prep:test"


def test_config(**overrides: Any) -> OperatorConfig:
    """Settings for tests: fast retries, no kopf log-to-Event posting below ERROR."""
    values: dict[str, Any] = {
        "watch_server_timeout": 30,
        "backoff_base": 0.1,
        "backoff_max": 1.0,
        "posting_level": logging.ERROR,
        "defaults": WorkloadDefaults(prep_image=TEST_IMAGE),
    }
    values.update(overrides)
    return OperatorConfig(**values)


@contextlib.contextmanager
def run_operator(namespace: str = "default", timeout: float = 30, **overrides: Any) -> Iterator[KopfRunner]:
    """The operator for the duration of the block; raises what the operator raised, with its output."""
    args = ["run", "--standalone", "--namespace", namespace]
    # kopf's CLI makes the runner's registry the process-wide default; put the previous one back, or
    # the next kopf operator started in this process (another test's) would run our handlers too.
    previous = kopf.get_default_registry()
    try:
        with KopfRunner(args, registry=build_registry(test_config(**overrides)), timeout=timeout) as runner:
            yield runner
    finally:
        kopf.set_default_registry(previous)
    if runner.exception is not None:
        raise AssertionError(f"the operator failed: {runner.exception!r}\n{runner.output[-3000:]}")
