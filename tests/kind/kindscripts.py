"""Load the kind e2e's standalone scripts (they run in pods, not as part of a package) for tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def load_script(name: str) -> ModuleType:
    """Import tests/kind/``name`` as a module (a unique name per script, so loads never collide)."""
    spec = importlib.util.spec_from_file_location(f"kind_{Path(name).stem}", HERE / name)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
