"""The Argo CD health check Lua, executed the way Argo CD executes it.

Argo CD (gopher-lua, Lua 5.1) runs a health script as a chunk with the live object in the global
`obj`, only the safe standard libraries loaded, and reads `status`/`message` from the returned
table. We run the shipped script under lupa's Lua 5.1 *and* 5.4 runtimes with `io`, `os`,
`require` and friends removed, so a script that leans on a library Argo CD does not load, or on a
newer Lua feature, fails here instead of in a cluster.
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


def run_health(obj: dict[str, Any], lua_module: Any) -> dict[str, str]:
    runtime = lua_module.LuaRuntime(register_eval=False, unpack_returned_tuples=True)
    sandbox = runtime.globals()
    for unsafe in ("io", "os", "require", "dofile", "loadfile", "package", "debug", "load", "loadstring"):
        sandbox[unsafe] = None
    sandbox.obj = _to_lua(runtime, obj)
    result = runtime.execute(HEALTH_LUA.read_text())
    assert result is not None, "the health script must return a table"
    return {"status": result["status"], "message": result["message"]}


@pytest.fixture(params=_runtimes(), ids=lambda m: m.__name__.rsplit(".", 1)[-1])
def health(request: pytest.FixtureRequest) -> Callable[[dict[str, Any]], dict[str, str]]:
    module = request.param
    return lambda obj: run_health(obj, module)


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
    status_module = pytest.importorskip(
        f"sft_operator.status.{'dataprep' if kind == 'SFTDataPrep' else 'sftrun'}"
    )
    obj: dict[str, Any] = {
        "apiVersion": "sft.dev/v1alpha1",
        "kind": kind,
        "metadata": {"name": "d", "namespace": "ml", "generation": generation},
        "spec": {"numShards": 2, "parallelism": 2, **kwargs.pop("spec", {})},
    }
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
