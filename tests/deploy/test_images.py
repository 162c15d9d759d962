"""Container images: hadolint, the structure we promise (multi-stage, pinned, non-root), and the locks."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "images"
DOCKERFILES = sorted(IMAGES.glob("*/Dockerfile"))
HADOLINT = Path(sys.executable).parent / "hadolint"
LOCKED = {"operator": ("operator",), "prep": ("prep",), "trainer-cpu": ("train",)}
"""Images that install a full transitive lock, and the project extras it must cover."""
TRUSTED_REGISTRIES = ("docker.io/", "nvcr.io/")
BUILD_TOOLS = re.compile(r"\b(gcc|g\+\+|clang|make|build-essential|cmake|git)\b")


@dataclass
class Stage:
    base: str
    name: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)


def parse(dockerfile: Path) -> tuple[dict[str, str], list[Stage]]:
    """Global ARG defaults and the stages of a Dockerfile (continuation lines joined, comments dropped)."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    args: dict[str, str] = {}
    stages: list[Stage] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        keyword, _, rest = line.partition(" ")
        keyword = keyword.upper()
        if keyword == "FROM":
            parts = rest.split()
            base = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[0])
            name = parts[2] if len(parts) == 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(base, name))
        elif keyword == "ARG" and not stages:
            key, _, default = rest.partition("=")
            args[key] = default
        elif stages:
            stages[-1].instructions.append((keyword, rest))
    return args, stages


def test_there_is_an_image_for_each_component() -> None:
    assert {p.parent.name for p in DOCKERFILES} == {"operator", "prep", "trainer", "trainer-cpu"}


def test_hadolint_passes_with_the_strictest_threshold() -> None:
    proc = subprocess.run(
        [str(HADOLINT), "--config", str(IMAGES / "hadolint.yaml"), "--no-color", *map(str, DOCKERFILES)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_hadolint_configuration_catches_violations(tmp_path: Path) -> None:
    """Guards the test above: the same invocation must fail an unpinned, label-less Dockerfile."""
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:3.11-slim\nRUN pip install requests\n")
    proc = subprocess.run(
        [str(HADOLINT), "--config", str(IMAGES / "hadolint.yaml"), "--no-color", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode != 0
    assert "DL3013" in proc.stdout and "DL3049" in proc.stdout


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_multi_stage_pinned_bases_and_non_root(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    assert len(stages) >= 2, "build in one stage, ship another"
    for stage in stages:
        image = stage.base if "/" in stage.base.split(":")[0] else f"docker.io/library/{stage.base}"
        if stage.base in {s.name for s in stages}:
            continue
        assert image.startswith(TRUSTED_REGISTRIES), stage.base
        tag = image.rsplit(":", 1)[-1]
        assert ":" in image and re.search(r"\d+\.\d+", tag), f"{stage.base} is not pinned to a versioned tag"
        assert "latest" not in tag
    final = stages[-1]
    users = [rest for keyword, rest in final.instructions if keyword == "USER"]
    assert users, "the final stage must switch to a non-root user"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0, "USER must be a numeric non-root uid (runAsNonRoot checks it)"


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.parent.name)
def test_final_stage_installs_no_build_tools(dockerfile: Path) -> None:
    _, stages = parse(dockerfile)
    for keyword, rest in stages[-1].instructions:
        if keyword == "RUN":
            assert "apt-get install" not in rest and "apk add" not in rest, rest
            assert not BUILD_TOOLS.search(rest.replace("--no-build-isolation", "")), rest


def test_images_run_as_the_uid_the_operator_sets() -> None:
    """The operator's pod securityContext pins runAsUser; the images' user and HOME must match it."""
    pods = pytest.importorskip("sft_operator.render.pods")
    for dockerfile in DOCKERFILES:
        _, stages = parse(dockerfile)
        users = [rest for keyword, rest in stages[-1].instructions if keyword == "USER"]
        assert users[-1] == f"{pods.RUN_AS}:{pods.RUN_AS}", dockerfile


def test_trainer_builds_on_a_nemo_release() -> None:
    _, stages = parse(IMAGES / "trainer" / "Dockerfile")
    base = stages[-1].base
    match = re.fullmatch(r"nvcr\.io/nvidia/nemo:(\d\d)\.(\d\d)(\.\d+)?", base)
    assert match, f"trainer base {base} is not a NeMo Framework release tag"
    # 26.02 shipped Megatron-Bridge r0.3.x; 0.4 (Nemotron 3 Super recipes) came with 26.04.
    assert (int(match.group(1)), int(match.group(2))) >= (26, 4)
    copied = " ".join(rest for keyword, rest in stages[-1].instructions if keyword == "RUN")
    assert "--no-deps" in copied, (
        "installing with deps would replace NVIDIA's CUDA builds of torch and friends"
    )
    assert "check_deps.py train" in copied


def test_copied_sources_exist_and_are_not_docker_ignored() -> None:
    ignored = {
        line.strip()
        for line in (REPO / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert {".git", ".venv"} <= ignored
    for dockerfile in DOCKERFILES:
        _, stages = parse(dockerfile)
        for stage in stages:
            for keyword, rest in stage.instructions:
                if keyword != "COPY" or rest.startswith("--from"):
                    continue
                *sources, _ = rest.split()
                for source in sources:
                    assert (REPO / source).exists(), f"{dockerfile}: COPY {source} does not exist"
                    top = source.rstrip("/").split("/")[0]
                    assert top not in ignored, f"{dockerfile}: COPY {source} is excluded by .dockerignore"


def _lock(image: str) -> dict[str, str]:
    pins = {}
    for line in (IMAGES / image / "requirements.txt").read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", "--")):
            continue
        name, sep, version = line.partition("==")
        assert sep, f"images/{image}/requirements.txt: '{line}' is not pinned with =="
        pins[name.lower().replace("_", "-")] = version
    return pins


def _declared(extras: tuple[str, ...]) -> list[Requirement]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    lines = list(project["dependencies"])
    for extra in extras:
        lines += project["optional-dependencies"][extra]
    return [Requirement(line) for line in lines]


@pytest.mark.parametrize("image", list(LOCKED))
def test_lock_pins_every_declared_dependency_within_its_range(image: str) -> None:
    pins = _lock(image)
    for req in _declared(LOCKED[image]):
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"images/{image}/requirements.txt lacks {req}; run `python images/lock.py`"
        assert req.specifier.contains(Version(pins[name]), prereleases=True), (
            f"images/{image}: {name}=={pins[name]} violates {req}; run `python images/lock.py`"
        )


@pytest.mark.parametrize("image", list(LOCKED))
def test_lock_is_closed_under_dependencies(image: str) -> None:
    """Every requirement of a locked package is itself locked (checked via the dev venv's metadata
    for packages installed here at the locked version; others are checked by `pip check` in the build)."""
    pins = _lock(image)
    env = {
        "python_version": "3.11",
        "sys_platform": "linux",
        "platform_system": "Linux",
        "platform_machine": "x86_64",
        "implementation_name": "cpython",
        "os_name": "posix",
        "platform_python_implementation": "CPython",
        "extra": "",
    }
    checked = 0
    for name, version in pins.items():
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        if Version(dist.version) != Version(version):
            continue
        checked += 1
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = req.name.lower().replace("_", "-")
            assert dep in pins, f"images/{image}: {name} needs {req} but the lock lacks it"
    assert checked >= len(pins) // 2, "too few locked packages are installed here to check the closure"


def test_trainer_cpu_lock_uses_the_cpu_build_of_torch() -> None:
    text = (IMAGES / "trainer-cpu" / "requirements.txt").read_text()
    assert "--extra-index-url https://download.pytorch.org/whl/cpu" in text
    pins = _lock("trainer-cpu")
    assert pins["torch"].endswith("+cpu")
    assert not [n for n in pins if n.startswith("nvidia-")], "CUDA wheels in the CPU image"


def test_build_backend_pins_satisfy_the_build_system() -> None:
    build = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]["requires"]
    pins = {}
    for line in (IMAGES / "build-requirements.txt").read_text().splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[name] = version
    for req in map(Requirement, build):
        assert req.name in pins, f"images/build-requirements.txt lacks {req}"
        assert SpecifierSet(str(req.specifier)).contains(pins[req.name])


def test_trainer_installs_the_megatron_bridge_the_trainer_is_pinned_to() -> None:
    """The image carries the Megatron-Bridge/megatron-core pair the engine is written and conformance-
    tested for (``make test-megatron``), not whatever the NeMo base ships (26.04: 0.4)."""
    from sft_train.engines.megatron_plan import MEGATRON_BRIDGE_VERSION, MEGATRON_CORE_VERSION

    text = (IMAGES / "trainer" / "Dockerfile").read_text()
    assert f"ARG MEGATRON_BRIDGE_VERSION={MEGATRON_BRIDGE_VERSION}\n" in text
    assert f"ARG MEGATRON_CORE_VERSION={MEGATRON_CORE_VERSION}\n" in text
    _, stages = parse(IMAGES / "trainer" / "Dockerfile")
    runs = " ".join(rest for keyword, rest in stages[-1].instructions if keyword == "RUN")
    assert '"megatron-bridge==${MEGATRON_BRIDGE_VERSION}"' in runs
    assert '"megatron-core==${MEGATRON_CORE_VERSION}"' in runs
