"""sftctl shaped like kubectl (issue 21 points 2 and 3), against the emulated API server (kubeemu).

Where a verb overlaps kubectl's, the real kubectl (the chart tests' binary, tests/deploy/deploytools.py)
is run against the same emulated server and the outputs are compared, so the conventions checked are
kubectl's own, not our idea of them. Facts taken from kubectl's source are cited where used.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml

from kubeemu import KubeEmulator
from kubeemu.fixtures import PROJECT_CRDS
from sft_operator.ctl.main import main

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "manifests" / "samples"
sys.path.insert(0, str(REPO / "tests" / "deploy"))
from deploytools import find_kube_tools  # noqa: E402


def sftctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def kubectl(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    tools = find_kube_tools()
    return subprocess.run(
        [str(tools.kubectl), *argv], input=stdin, capture_output=True, text=True, timeout=60, env=os.environ
    )


@pytest.fixture
def crds(kube: KubeEmulator) -> KubeEmulator:
    kube.apply(PROJECT_CRDS)
    return kube


def split_samples(tmp_path: Path) -> tuple[Path, Path]:
    prep, run = tmp_path / "prep.yaml", tmp_path / "run.yaml"
    prep.write_text((SAMPLES / "sftdataprep-tiny.yaml").read_text())
    run.write_text((SAMPLES / "sftrun-tiny.yaml").read_text())
    return prep, run


# -- point 2: -f takes several files, directories and stdin ------------------------------------------
def test_apply_uses_every_file_given_with_f(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """`apply -f a -f b` used only b before (argparse's last -f won)."""
    prep, run = split_samples(tmp_path)
    code, out, err = sftctl(capsys, "apply", "-f", str(prep), "-f", str(run))
    assert code == 0, err
    assert "sftdataprep.sft.dev/tiny created" in out and "sftrun.sft.dev/tiny created" in out
    assert crds.get("SFTDataPrep", "tiny") and crds.get("SFTRun", "tiny")


def test_f_takes_a_directory_in_lexical_order_and_recursive_with_R(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    """kubectl's -f DIR: the .json/.yaml/.yml files of DIR (cli-runtime pkg/resource/visitor.go
    FileExtensions, filepath.Walk: lexical order), subdirectories only with -R; other files ignored."""
    folder = tmp_path / "manifests"
    (folder / "nested").mkdir(parents=True)
    (folder / "b-run.yml").write_text((SAMPLES / "sftrun-tiny.yaml").read_text())
    prep = yaml.safe_load_all((SAMPLES / "sftdataprep-tiny.yaml").read_text())
    (folder / "a-prep.json").write_text(json.dumps(next(d for d in prep if d["kind"] == "SFTDataPrep")))
    (folder / "README.md").write_text("not a manifest")
    other = (SAMPLES / "sftrun-tiny.yaml").read_text().replace("name: tiny\n", "name: nested\n", 1)
    (folder / "nested" / "c.yaml").write_text(other)
    code, out, err = sftctl(capsys, "apply", "-f", str(folder))
    assert code == 0, err
    lines = [line for line in out.splitlines() if "created" in line]
    assert [line.split()[0] for line in lines] == ["sftdataprep.sft.dev/tiny", "sftrun.sft.dev/tiny"]
    assert "nested" not in out
    code, out, err = sftctl(capsys, "apply", "-R", "-f", str(folder))
    assert code == 0, err
    assert "sftrun.sft.dev/nested created" in out
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = sftctl(capsys, "apply", "-f", str(empty))
    assert code == 2 and "holds no .json/.yaml/.yml file" in err


def test_f_dash_reads_stdin_beside_files(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prep, run = split_samples(tmp_path)
    monkeypatch.setattr("sys.stdin", io.StringIO(run.read_text()))
    code, out, err = sftctl(capsys, "apply", "-f", str(prep), "-f", "-")
    assert code == 0, err
    assert "sftdataprep.sft.dev/tiny created" in out and "sftrun.sft.dev/tiny created" in out


def test_a_name_defined_in_two_files_is_an_error_naming_both(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, run = split_samples(tmp_path)
    again = tmp_path / "again.yaml"
    again.write_text(run.read_text())
    code, _, err = sftctl(capsys, "apply", "-f", str(run), "-f", str(again))
    assert code == 2
    assert f"SFTRun/tiny is defined twice: {run}#1 and {again}#1" in err
    assert crds.get_or_none("SFTRun", "tiny") is None  # nothing applied


# -- point 3: kubectl's verbs and flags ------------------------------------------------------------
def test_get_o_name_yaml_json_match_kubectl(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    prep, run = split_samples(tmp_path)
    assert sftctl(capsys, "apply", "-f", str(prep), "-f", str(run))[0] == 0
    code, out, _ = sftctl(capsys, "get", "sftruns", "-o", "name")
    assert code == 0
    real = kubectl("get", "sftruns", "-o", "name")
    assert real.returncode == 0, real.stderr
    assert out == real.stdout == "sftrun.sft.dev/tiny\n"
    code, out, _ = sftctl(capsys, "get", "-o", "name")
    assert out.splitlines() == ["sftdataprep.sft.dev/tiny", "sftrun.sft.dev/tiny"]
    # one object: that object; several: a v1 List (kubectl's printers for -o yaml/json)
    code, out, _ = sftctl(capsys, "get", "sftrun/tiny", "-o", "json")
    assert json.loads(out) == json.loads(kubectl("get", "sftrun", "tiny", "-o", "json").stdout)
    code, out, _ = sftctl(capsys, "get", "sftdatapreps", "sftruns", "-o", "yaml")
    ours = yaml.safe_load(out)
    theirs = yaml.safe_load(kubectl("get", "sftdatapreps,sftruns", "-o", "yaml").stdout)
    assert ours["kind"] == theirs["kind"] == "List" and ours["apiVersion"] == theirs["apiVersion"] == "v1"
    assert [i["metadata"]["name"] for i in ours["items"]] == [i["metadata"]["name"] for i in theirs["items"]]
    assert [i["kind"] for i in ours["items"]] == [i["kind"] for i in theirs["items"]]


@pytest.fixture
def two_namespaces(crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> KubeEmulator:
    """The tiny prep and run in default, a labelled run in team-b; the run with a status whose cells
    test the printing (a float loss kubectl prints in Go's %v, a two-line message, Ready's reason for
    the priority-1 column); the server's clock for the AGE column pinned 30 h ahead (both clients ask
    the server, a second apart)."""
    crds.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
    prep, run = split_samples(tmp_path)
    labelled = run.read_text().replace("name: tiny\n", "name: tiny\n  labels: {team: nlp}\n", 1)
    (tmp_path / "labelled.yaml").write_text(labelled)
    assert sftctl(capsys, "apply", "-f", str(prep), "-f", str(run))[0] == 0
    assert sftctl(capsys, "apply", "-n", "team-b", "-f", str(tmp_path / "labelled.yaml"))[0] == 0
    status = {
        "phase": "Running",
        "message": "training\nsecond line",
        "progress": {"iterations": "3/20", "loss": 1234567.0, "tokensText": "1.18G", "etaText": "2h5m"},
        "conditions": [
            {
                "type": "Ready",
                "status": "False",
                "reason": "Training",
                "lastTransitionTime": "2026-01-01T00:00:00Z",
            }
        ],
    }
    crds.patch_status("SFTRun", "tiny", status)
    crds.patch_status("SFTRun", "tiny", {**status, "progress": {"loss": 0.25}}, namespace="team-b")
    assert crds.server is not None
    later = datetime.now(UTC) + timedelta(hours=30)
    crds.server.table_clock = lambda: later
    return crds


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (["get"], ["get", "sftdatapreps,sftruns"]),
        (["get", "sftdatapreps,sftruns"], ["get", "sftdatapreps,sftruns"]),
        (["get", "sftruns", "sftdatapreps"], ["get", "sftruns,sftdatapreps"]),
        (["get", "sftruns"], ["get", "sftruns"]),
        (["get", "sftruns", "-o", "wide"], ["get", "sftruns", "-o", "wide"]),
        (["get", "-A"], ["get", "sftdatapreps,sftruns", "-A"]),
        (["get", "-A", "-o", "wide"], ["get", "sftdatapreps,sftruns", "-A", "-o", "wide"]),
        (["get", "sftruns", "-A", "-l", "team=nlp"], ["get", "sftruns", "-A", "-l", "team=nlp"]),
        (["get", "sftrun/tiny", "sftdataprep/tiny"], ["get", "sftrun/tiny", "sftdataprep/tiny"]),
        (["get", "sftrun", "tiny"], ["get", "sftrun", "tiny"]),
        (["get", "sftdp", "-l", "team=nlp"], ["get", "sftdp", "-l", "team=nlp"]),
    ],
)
def test_get_prints_what_kubectl_get_prints(
    two_namespaces: KubeEmulator, capsys: pytest.CaptureFixture[str], ours: list[str], theirs: list[str]
) -> None:
    """Byte for byte what kubectl 1.35 prints from the same server: one table per kind with the CRDs'
    printer columns (server-side, kubeemu.tables as apiextensions-apiserver computes them), NAME
    kind-qualified when several kinds are asked for, a blank line between kinds, NAMESPACE with -A,
    the priority-1 REASON with -o wide. Before: one mixed table with sftctl's own columns."""
    code, out, err = sftctl(capsys, *ours)
    real = kubectl(*theirs)
    assert (code, out, err) == (real.returncode, real.stdout, real.stderr)
    assert out or err


def test_get_wide_all_namespaces_and_selector(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    crds.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "team-b"}})
    _, run = split_samples(tmp_path)
    labelled = run.read_text().replace("name: tiny\n", "name: tiny\n  labels: {team: nlp}\n", 1)
    (tmp_path / "labelled.yaml").write_text(labelled)
    assert sftctl(capsys, "apply", "-f", str(run))[0] == 0
    assert sftctl(capsys, "apply", "-n", "team-b", "-f", str(tmp_path / "labelled.yaml"))[0] == 0
    code, out, _ = sftctl(capsys, "get", "sftruns", "-A")
    header, *rows = out.splitlines()
    assert header.split()[:2] == ["NAMESPACE", "NAME"]  # kubectl -A: NAMESPACE first
    assert [r.split()[:2] for r in rows] == [["default", "tiny"], ["team-b", "tiny"]]
    code, out, _ = sftctl(capsys, "get", "sftruns", "-A", "-l", "team=nlp", "-o", "name")
    assert out.splitlines() == ["sftrun.sft.dev/tiny"]
    assert kubectl("get", "sftruns", "-A", "-l", "team=nlp", "-o", "name").stdout == out
    code, out, err = sftctl(capsys, "get", "-l", "team=nlp")  # this namespace (default) has none
    assert code == 0 and out == ""
    real = kubectl("get", "sftruns", "-l", "team=nlp")
    assert err.strip() == real.stderr.strip() == "No resources found in default namespace."
    code, out, _ = sftctl(capsys, "get", "sftrun/tiny", "-o", "wide")
    header = out.splitlines()[0].split()
    assert header[-3:] == ["AGE", "MESSAGE", "REASON"]  # the CRD's priority-1 column REASON


def test_get_w_prints_the_table_then_a_row_per_change(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import threading

    _, run = split_samples(tmp_path)
    assert sftctl(capsys, "apply", "-f", str(run))[0] == 0
    timer = threading.Timer(
        1.0, lambda: crds.patch_status("SFTRun", "tiny", {"phase": "Running", "message": "training"})
    )
    timer.start()
    try:
        code, out, _ = sftctl(capsys, "get", "sftruns", "-w", "--interval", "0.2", "--request-timeout", "3s")
    finally:
        timer.cancel()
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("NAME") and "NAME" not in "".join(lines[1:])  # one header, as kubectl -w
    assert lines[1].startswith("tiny ") and "Running" in lines[-1] and "training" in lines[-1]
    assert lines[-1].startswith("tiny ") and len(lines) >= 3


def test_delete_by_name_by_file_and_missing_as_kubectl(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    prep, run = split_samples(tmp_path)
    assert sftctl(capsys, "apply", "-f", str(prep), "-f", str(run))[0] == 0
    code, out, err = sftctl(capsys, "delete", "sftrun/tiny")
    assert code == 0, err
    assert out.startswith('sftrun.sft.dev "tiny" deleted')
    assert crds.get_or_none("SFTRun", "tiny") is None
    # missing: kubectl's NotFound line and exit 1 (kubectl/pkg/cmd/util/helpers.go: DefaultErrorExitCode)
    code, _, err = sftctl(capsys, "delete", "sftrun/tiny")
    real = kubectl("delete", "sftrun", "tiny")
    assert code == real.returncode == 1
    assert err.strip() == real.stderr.strip()
    assert sftctl(capsys, "delete", "sftrun/tiny", "--ignore-not-found")[0] == 0
    code, out, err = sftctl(capsys, "delete", "-f", str(prep), "-f", str(run), "--ignore-not-found")
    assert code == 0, err
    assert 'sftdataprep.sft.dev "tiny" deleted' in out and "skipping PersistentVolumeClaim/sft-data" in err


def test_version_and_bad_flags_show_the_commands_usage(capsys: pytest.CaptureFixture[str]) -> None:
    from sft_operator import __version__

    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and capsys.readouterr().out.startswith(f"sftctl {__version__}")
    for argv, usage in (
        (["get", "--bogus"], "usage: sftctl get "),
        (["run", "-f", "x.yaml", "--nope"], "usage: sftctl run "),
        (["report", "dir", "-o", "out"], "usage: sftctl report "),  # -o no longer means a directory
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        err = capsys.readouterr().err
        assert exc.value.code == 2, argv
        assert err.startswith(usage), err
        assert "unrecognized arguments" in err


def test_report_output_dir_and_the_deprecated_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "metrics.jsonl").write_text(json.dumps({"iteration": 1, "loss": 1.0}) + "\n")
    assert main(["report", str(folder), "--output-dir", str(tmp_path / "out")]) == 0
    assert (tmp_path / "out" / "report.html").exists()
    assert main(["report", str(folder), "--output", str(tmp_path / "old")]) == 0
    assert "deprecated; use --output-dir" in capsys.readouterr().err
    assert (tmp_path / "old" / "report.html").exists()


def test_delete_prints_what_kubectl_prints(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    _, run = split_samples(tmp_path)
    assert sftctl(capsys, "apply", "-f", str(run))[0] == 0
    real = kubectl("delete", "sftrun", "tiny")
    assert real.returncode == 0, real.stderr
    assert sftctl(capsys, "apply", "-f", str(run))[0] == 0
    code, out, _ = sftctl(capsys, "delete", "sftrun/tiny")
    assert code == 0 and out == real.stdout


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        (["get", "sftrun/tiny", "-A"], ["get", "sftrun", "tiny", "-A"]),
        (["get", "sftrun/tiny", "-l", "a=b"], ["get", "sftrun", "tiny", "-l", "a=b"]),
        (["get", "sftruns", "-A"], ["get", "sftruns", "-A"]),
        (["get", "sftruns"], ["get", "sftruns"]),
        (["delete", "sftruns"], ["delete", "sftruns"]),
        (["delete", "sftruns,sftdatapreps"], ["delete", "sftruns,sftdatapreps"]),
        (["delete", "sftruns", "--all"], ["delete", "sftruns", "--all"]),
        (["delete", "sftruns", "-l", "a=b"], ["delete", "sftruns", "-l", "a=b"]),
    ],
)
def test_refusals_and_empty_answers_are_kubectls(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], ours: list[str], theirs: list[str]
) -> None:
    """Same words, same stream, same exit code as kubectl 1.35 on the same (empty) server."""
    code, out, err = sftctl(capsys, *ours)
    real = kubectl(*theirs)
    assert (code, out, err) == (real.returncode, real.stdout, real.stderr)


def test_apply_o_name_prints_what_kubectl_apply_o_name_prints(
    crds: KubeEmulator, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    prep, run = split_samples(tmp_path)
    code, out, err = sftctl(capsys, "apply", "-f", str(prep), "-f", str(run), "-o", "name")
    assert code == 0, err
    assert out.splitlines() == ["sftdataprep.sft.dev/tiny", "sftrun.sft.dev/tiny"]
    # server-side, as sftctl applies (kubeemu serves no OpenAPI document for kubectl's validation)
    real = kubectl("apply", "--server-side", "--validate=false", "-f", str(run), "-o", "name")
    assert real.returncode == 0, real.stderr
    code, out, _ = sftctl(capsys, "apply", "-f", str(run), "-o", "name")
    assert out == real.stdout == "sftrun.sft.dev/tiny\n"
    code, out, _ = sftctl(capsys, "apply", "-f", str(run), "-o", "yaml")
    assert yaml.safe_load(out)["spec"]["train"]["trainIters"] == 20
