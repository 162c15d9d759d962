"""The Argo CD health check Lua, executed the way Argo CD executes it.

Argo CD runs a custom health script from ``argocd-cm`` in gopher-lua (Lua 5.1) as a chunk with the
live object in the global ``obj`` and reads ``status``/``message`` from the returned table. Facts from
argo-cd ``util/lua/lua.go`` (``VM.runLua``) and ``util/lua/oslib_safe.go``:

* the state is created with ``SkipOpenLibs: !UseOpenLibs``, and ``GetHealthScript`` returns
  ``UseOpenLibs`` from the argocd-cm override (false unless ``useOpenLibs: true`` is set; only the
  built-in scripts get ``true``);
* it then opens exactly ``package``, ``base`` and ``table``, and ``OpenSafeOs``, which registers
  ``time`` and ``date`` into the module named ``lua.TabLibName``: there is no global ``os``, the two
  functions appear as ``table.time``/``table.date``, and ``require("os")`` (a preloaded
  ``SafeOsLoader``) returns a table of just ``time`` and ``date``;
* so ``string``, ``math``, ``io``, ``debug``, ``coroutine`` and the real ``os`` are absent, and
  without the string library gopher-lua sets no string metatable (``("x"):upper()`` fails too);
* gopher-lua's base library (``baselib.go``) is the Lua 5.1 set plus ``require``/``module``.

We build that state in lupa's Lua 5.1 *and* 5.4 runtimes (5.4 catches a reliance on 5.1-only
behaviour the other way round), so a script that leans on a library Argo CD does not load fails here
instead of in a cluster. (The real ``os.time``/``os.date`` stand in for Argo CD's re-implementations.)
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
HEALTH_LUA = REPO / "manifests" / "argocd" / "health.lua"
ARGO_STATUSES = {"Healthy", "Progressing", "Degraded", "Suspended", "Missing", "Unknown"}
KINDS = ("SFTDataPrep", "SFTRun")


def _runtimes() -> list[Any]:
    import lupa.lua51
    import lupa.lua54

    return [lupa.lua51, lupa.lua54]


def _to_lua(runtime: Any, value: Any) -> Any:
    """Convert JSON-like Python data to Lua tables the way Argo CD does (lists are 1-based arrays)."""
    if isinstance(value, dict):
        return runtime.table_from({k: _to_lua(runtime, v) for k, v in value.items()})
    if isinstance(value, list):
        return runtime.table_from([_to_lua(runtime, v) for v in value])
    return value


GOPHER_BASE = [
    "assert",
    "collectgarbage",
    "dofile",
    "error",
    "getfenv",
    "getmetatable",
    "load",
    "loadfile",
    "loadstring",
    "next",
    "pcall",
    "print",
    "rawequal",
    "rawget",
    "rawset",
    "select",
    "setfenv",
    "setmetatable",
    "tonumber",
    "tostring",
    "type",
    "unpack",
    "xpcall",
    "module",
    "require",
    "ipairs",
    "pairs",
    "_G",
    "_VERSION",
]
"""gopher-lua baselib.go: baseOpen's globals (Lua 5.1 base plus require/module from its loadlib)."""
ARGO_LIBS = ("package", "table")
"""The libraries argo-cd util/lua/lua.go opens besides base (the safe os lands in `table`)."""

# Runs with every library still open, then leaves only what Argo CD's VM.runLua provides.
ARGO_SANDBOX = """
local keep = ...
local set_metatable, os_time, os_date = debug.setmetatable, os.time, os.date
table.time, table.date = os_time, os_date
-- require() reads the registry's copies of these tables: change them in place
for name in pairs(package.loaded) do
  if name ~= "_G" and name ~= "package" and name ~= "table" then package.loaded[name] = nil end
end
for name in pairs(package.preload) do package.preload[name] = nil end
package.preload.os = function() return {time = os_time, date = os_date} end
if package.searchers then
  package.searchers = {package.searchers[1], package.searchers[2]}
else
  package.loaders = {package.loaders[1], package.loaders[2]}
end
package.loadlib, package.cpath = nil, ""
set_metatable("", nil)
local names = {}
for name in pairs(_G) do names[#names + 1] = name end
for _, name in ipairs(names) do
  if not keep[name] then _G[name] = nil end
end
"""


def argo_runtime(lua_module: Any) -> Any:
    """A Lua state with exactly the globals Argo CD gives a custom health check."""
    runtime = lua_module.LuaRuntime(register_eval=False, unpack_returned_tuples=True)
    keep = runtime.table_from({name: True for name in (*GOPHER_BASE, *ARGO_LIBS)})
    runtime.execute(ARGO_SANDBOX, keep)
    return runtime


def run_health(obj: dict[str, Any], lua_module: Any) -> dict[str, str]:
    runtime = argo_runtime(lua_module)
    runtime.globals().obj = _to_lua(runtime, obj)
    result = runtime.execute(HEALTH_LUA.read_text())
    assert result is not None, "the health script must return a table"
    return {"status": result["status"], "message": result["message"]}


@pytest.fixture(params=_runtimes(), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def lua_module(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.mark.parametrize(
    ("chunk", "expected"),
    [
        ("return string", None),
        ("return math", None),
        ("return os", None),
        ("return io", None),
        ("return debug", None),
        ("return coroutine", None),
        ("return type(table.insert), type(table.concat)", ("function", "function")),
        ("return type(table.time), type(table.date)", ("function", "function")),
        ("local os = require('os'); return type(os.time), os.exit", ("function", None)),
        ("return pcall(require, 'string')", False),
        ("return pcall(require, 'io')", False),
        ("return pcall(function() return ('x'):upper() end)", False),
        ("return tostring(12) .. '!'", "12!"),
    ],
)
def test_the_sandbox_is_argo_cds(lua_module: Any, chunk: str, expected: Any) -> None:
    """The harness itself: what argo-cd's VM.runLua gives a custom health script, and nothing more."""
    result = argo_runtime(lua_module).execute(chunk)
    if isinstance(result, tuple) and isinstance(expected, bool):
        result = result[0]
    assert result == expected


def test_the_script_needs_no_library_argo_cd_withholds() -> None:
    """Custom checks get no `string`/`math` unless useOpenLibs is set; this script must not need it."""
    import re

    code = "\n".join(line.split("--", 1)[0] for line in HEALTH_LUA.read_text().splitlines())
    assert not re.search(r"\b(string|math|io|os|debug|coroutine)\s*[.:\[]", code)
    assert not re.search(r"[\")\]]\s*:\s*\w+\s*\(", code), "string methods need the string metatable"


@pytest.fixture
def health(lua_module: Any) -> Callable[[dict[str, Any]], dict[str, str]]:
    return lambda obj: run_health(obj, lua_module)


def cr(
    kind: str,
    phase: str | None,
    *,
    generation: int = 3,
    observed: int | None = 3,
    conditions: list[dict[str, Any]] | None = None,
    message: str | None = None,
    suspend: bool | None = None,
) -> dict[str, Any]:
    obj: dict[str, Any] = {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "tiny", "namespace": "ml", "generation": generation},
        "spec": {},
    }
    if suspend is not None:
        obj["spec"]["suspend"] = suspend
    status: dict[str, Any] = {}
    if phase is not None:
        status["phase"] = phase
    if observed is not None:
        status["observedGeneration"] = observed
    if conditions is not None:
        status["conditions"] = conditions
    if message is not None:
        status["message"] = message
    if status:
        obj["status"] = status
    return obj


def cond(ctype: str, status: str, reason: str = "", message: str = "", generation: int = 3) -> dict[str, Any]:
    return {
        "type": ctype,
        "status": status,
        "reason": reason,
        "message": message,
        "observedGeneration": generation,
    }


@pytest.mark.parametrize("kind", KINDS)
def test_succeeded_is_healthy(health: Callable[..., dict[str, str]], kind: str) -> None:
    result = health(
        cr(
            kind,
            "Succeeded",
            conditions=[
                cond("Ready", "True", "Succeeded", "wrote 12 shards, 1.2M tokens"),
                cond("Reconciling", "False"),
                cond("Stalled", "False"),
            ],
        )
    )
    assert result == {"status": "Healthy", "message": "wrote 12 shards, 1.2M tokens"}


@pytest.mark.parametrize("kind", KINDS)
def test_failed_is_degraded_with_the_operator_reason(
    health: Callable[..., dict[str, str]], kind: str
) -> None:
    reason = "pod tiny-prep-0 exited with code 2: ConfigError: pack_size must be >= 16"
    result = health(
        cr(
            kind,
            "Failed",
            conditions=[
                cond("Ready", "False", "JobFailed", reason),
                cond("Stalled", "False"),
            ],
        )
    )
    assert result == {"status": "Degraded", "message": reason}


def test_failed_prefers_the_top_level_message_over_ready(health: Callable[..., dict[str, str]]) -> None:
    result = health(
        cr(
            "SFTRun",
            "Failed",
            message="replica Master-0 exited 1",
            conditions=[
                cond("Ready", "False", "Failed", "generic"),
            ],
        )
    )
    assert result == {"status": "Degraded", "message": "replica Master-0 exited 1"}


@pytest.mark.parametrize("phase", ["Pending", "Running", "Waiting"])
def test_stalled_true_is_degraded_whatever_the_phase(
    health: Callable[..., dict[str, str]], phase: str
) -> None:
    text = "the PyTorchJob CRD (kubeflow.org/v1) is not installed; install the Kubeflow training operator"
    result = health(
        cr(
            "SFTRun",
            phase,
            conditions=[
                cond("Ready", "False", "Stalled", "not ready"),
                cond("Stalled", "True", "PyTorchJobCRDMissing", text),
            ],
        )
    )
    assert result == {"status": "Degraded", "message": text}


@pytest.mark.parametrize("kind", KINDS)
def test_suspended_phase_is_suspended(health: Callable[..., dict[str, str]], kind: str) -> None:
    result = health(
        cr(
            kind,
            "Suspended",
            suspend=True,
            conditions=[
                cond("Ready", "False", "Suspended", "suspended by spec.suspend"),
            ],
        )
    )
    assert result["status"] == "Suspended"
    assert result["message"] == "suspended by spec.suspend"


def test_spec_suspend_is_suspended_while_pending(health: Callable[..., dict[str, str]]) -> None:
    result = health(cr("SFTDataPrep", "Pending", suspend=True))
    assert result == {"status": "Suspended", "message": "SFTDataPrep is suspended"}


@pytest.mark.parametrize(
    ("phase", "conditions", "expected"),
    [
        (
            "Pending",
            [cond("Reconciling", "True", "Creating", "creating Job tiny-prep")],
            "creating Job tiny-prep",
        ),
        ("Running", [cond("Reconciling", "True", "Running", "7/12 shards")], "7/12 shards"),
        (
            "Waiting",
            [
                cond(
                    "Reconciling",
                    "True",
                    "WaitingForDataPrep",
                    "waiting for SFTDataPrep tiny (phase Running)",
                )
            ],
            "waiting for SFTDataPrep tiny (phase Running)",
        ),
        ("Running", None, "SFTRun is Running"),
        (None, [], "Waiting for the sft-operator to set a phase"),
    ],
)
def test_in_flight_phases_are_progressing_with_the_status_message(
    health: Callable[..., dict[str, str]],
    phase: str | None,
    conditions: list[dict[str, Any]] | None,
    expected: str,
) -> None:
    result = health(cr("SFTRun", phase, conditions=conditions))
    assert result == {"status": "Progressing", "message": expected}


def test_no_status_yet_is_progressing(health: Callable[..., dict[str, str]]) -> None:
    obj = cr("SFTDataPrep", None, observed=None)
    assert "status" not in obj
    result = health(obj)
    assert result["status"] == "Progressing"
    assert "SFTDataPrep status" in result["message"]


@pytest.mark.parametrize("phase", ["Succeeded", "Failed", "Suspended", "Running"])
def test_stale_status_is_progressing_whatever_it_says(
    health: Callable[..., dict[str, str]], phase: str
) -> None:
    """A spec edit bumps generation; until the operator observes it the old verdict must not show."""
    obj = cr("SFTRun", phase, generation=4, observed=3, conditions=[cond("Stalled", "True", "X", "old")])
    result = health(obj)
    assert result == {
        "status": "Progressing",
        "message": "Waiting for the sft-operator to observe generation 4 (status describes generation 3)",
    }


def test_generations_decoded_as_floats_print_as_integers(health: Callable[..., dict[str, str]]) -> None:
    """Argo CD's JSON decoder hands Lua floats; messages must still read "generation 4", not "4.0"."""
    obj = cr("SFTRun", "Running", generation=4, observed=3)
    obj["metadata"]["generation"] = 4.0
    obj["status"]["observedGeneration"] = 3.0
    assert health(obj)["message"].endswith("generation 4 (status describes generation 3)")


def test_status_without_observed_generation_is_progressing(health: Callable[..., dict[str, str]]) -> None:
    result = health(cr("SFTRun", "Succeeded", observed=None))
    assert result == {
        "status": "Progressing",
        "message": "Waiting for the sft-operator to observe generation 3",
    }


def test_newer_observed_generation_is_not_stale(health: Callable[..., dict[str, str]]) -> None:
    """observedGeneration can only be >= generation after a race; that must not block Healthy."""
    result = health(cr("SFTRun", "Succeeded", generation=3, observed=3))
    assert result["status"] == "Healthy"


def test_every_result_is_a_valid_argo_status(health: Callable[..., dict[str, str]]) -> None:
    phases = [None, "Pending", "Waiting", "Running", "Succeeded", "Failed", "Suspended", "Unknown"]
    for kind in KINDS:
        for phase in phases:
            for stalled in ("True", "False"):
                obj = cr(kind, phase, conditions=[cond("Stalled", stalled, "R", "m")])
                result = health(copy.deepcopy(obj))
                assert result["status"] in ARGO_STATUSES
                assert isinstance(result["message"], str) and result["message"]


# ---- The health check over statuses the operator itself derives (sft_operator.status.*.derive), so a
# change in the operator's status shape that the Lua no longer understands fails here.

NOW = "2026-11-25T10:00:00Z"


def _derived(kind: str, job: dict[str, Any] | None, generation: int = 2, **kwargs: Any) -> dict[str, Any]:
    status_module = pytest.importorskip(f"status_json.{'dataprep' if kind == 'SFTDataPrep' else 'sftrun'}")
    obj: dict[str, Any] = {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "d", "namespace": "ml", "generation": generation},
        "spec": {"numShards": 2, "parallelism": 2, **kwargs.pop("spec", {})},
    }
    if kind == "SFTRun":  # the child's backend (job here is PyTorchJob-shaped: Succeeded, Failed)
        kwargs.setdefault("backend", pytest.importorskip("sft_operator.backends.pytorchjob").BACKEND)
    obj["status"] = status_module.derive(obj, job, [], now=NOW, **kwargs)
    return obj


def _job(conditions: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"metadata": {"name": "d-child", "uid": "u1"}, "spec": spec, "status": {"conditions": conditions}}


@pytest.mark.parametrize("kind", KINDS)
def test_operator_statuses_map_to_the_right_health(health: Callable[..., dict[str, str]], kind: str) -> None:
    creating = health(_derived(kind, None))
    assert creating["status"] == "Progressing"
    assert creating["message"].startswith("creating the")

    done = health(
        _derived(kind, _job([{"type": "Succeeded" if kind == "SFTRun" else "Complete", "status": "True"}]))
    )
    assert done["status"] == "Healthy"

    failed = health(
        _derived(
            kind,
            _job(
                [
                    {
                        "type": "Failed",
                        "status": "True",
                        "reason": "BackoffLimitExceeded",
                        "message": "Job has reached the specified backoff limit",
                    }
                ]
            ),
        )
    )
    assert failed["status"] == "Degraded"
    assert "BackoffLimitExceeded" in failed["message"] or "backoff limit" in failed["message"]

    invalid = health(_derived(kind, None, error=("InvalidSpec", "outputDir: use an s3:// URI")))
    assert invalid == {"status": "Degraded", "message": "outputDir: use an s3:// URI"}

    stale = _derived(kind, None)
    stale["metadata"]["generation"] = 3
    assert health(stale)["status"] == "Progressing"


def test_operator_suspended_prep_is_suspended(health: Callable[..., dict[str, str]]) -> None:
    obj = _derived("SFTDataPrep", _job([], suspend=True), spec={"suspend": True})
    assert obj["status"]["phase"] == "Suspended"
    assert health(obj)["status"] == "Suspended"


def test_operator_waiting_run_is_progressing_with_the_prep_named(
    health: Callable[..., dict[str, str]],
) -> None:
    sftrun = pytest.importorskip("sft_operator.status.sftrun")
    data = sftrun.DataState(
        ready=False, reason="WaitingForDataPrep", message="waiting for SFTDataPrep tiny (phase Running)"
    )
    obj = _derived("SFTRun", None, data=data)
    assert obj["status"]["phase"] == "Waiting"
    assert health(obj) == {"status": "Progressing", "message": "waiting for SFTDataPrep tiny (phase Running)"}


@pytest.mark.parametrize(
    ("generation", "text"), [(10.0, "10"), (1234567.0, "1234567"), (2**40, "1099511627776")]
)
def test_generation_digits_are_built_without_the_string_library(
    health: Callable[..., dict[str, str]], generation: float, text: str
) -> None:
    obj = cr("SFTRun", "Running", generation=1, observed=None)
    obj["metadata"]["generation"] = generation
    assert health(obj)["message"] == f"Waiting for the sft-operator to observe generation {text}"
