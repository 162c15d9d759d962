"""Fail the trainer image build when the base container does not satisfy the project's needs.

The trainer image installs ``sft-operator`` with ``--no-deps`` on top of the NeMo container, because
reinstalling torch/transformers/etc. over NVIDIA's CUDA build would break it. That trades pip's
dependency resolution for this explicit check: every requirement of the named extras (and the
base dependencies) must already be installed at a version that satisfies its specifier, and the
named import-only modules must be importable without executing them (Megatron-Bridge and
Megatron-Core touch CUDA at import time, which a GPU-less build cannot do).

Packages the base may lack are pinned in ``images/trainer/requirements.txt``;
``--missing-from FILE`` prints the pins from FILE whose distribution is not installed at all, so the
build adds exactly those and never replaces a package the container already ships.

Usage: ``python check_deps.py train --module megatron.bridge``
       ``python check_deps.py --missing-from requirements.txt > missing.txt``
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from importlib import metadata

from packaging.requirements import Requirement

PROJECT = "sft-operator"


def requirements_for(extras: list[str], project: str = PROJECT) -> list[Requirement]:
    """The project's requirements that apply to this interpreter and these extras."""
    wanted = []
    for line in metadata.requires(project) or []:
        req = Requirement(line)
        if req.marker is None or any(req.marker.evaluate({"extra": extra}) for extra in extras):
            wanted.append(req)
    return wanted


def problems(extras: list[str], modules: list[str], project: str = PROJECT) -> list[str]:
    found = []
    try:
        metadata.version(project)
    except metadata.PackageNotFoundError:
        return [f"{project} itself is not installed"]
    known = set(metadata.metadata(project).get_all("Provides-Extra") or [])
    for extra in extras:
        if extra not in known:
            found.append(f"{project} has no extra '{extra}' (known: {', '.join(sorted(known))})")
    for req in requirements_for(extras, project):
        try:
            version = metadata.version(req.name)
        except metadata.PackageNotFoundError:
            found.append(f"{req.name} is missing (need {req})")
            continue
        if req.specifier and not req.specifier.contains(version, prereleases=True):
            found.append(f"{req.name} {version} does not satisfy {req}")
    for module in modules:
        try:
            spec = importlib.util.find_spec(module)
        except ModuleNotFoundError:
            spec = None
        if spec is None:
            found.append(f"module {module} is not importable")
    return found


def missing_pins(lines: list[str]) -> list[str]:
    """Requirement lines (``name==version``) whose distribution is not installed; comments skipped."""
    missing = []
    for raw in lines:
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        req = Requirement(line)
        try:
            metadata.version(req.name)
        except metadata.PackageNotFoundError:
            missing.append(line)
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Check that installed packages satisfy sft-operator's extras."
    )
    parser.add_argument("extras", nargs="*", help="extras of sft-operator to check (e.g. train)")
    parser.add_argument("--module", action="append", default=[], help="a module that must be importable")
    parser.add_argument(
        "--missing-from", metavar="FILE", help="print the pins in FILE that are not installed"
    )
    args = parser.parse_args(argv)
    if args.missing_from:
        with open(args.missing_from, encoding="utf-8") as handle:
            for line in missing_pins(handle.read().splitlines()):
                print(line)
        return 0
    found = problems(args.extras, args.module)
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    if found:
        print(
            "fix: pin the missing packages in images/trainer/requirements.txt or move to a NeMo tag that "
            "ships them (build-arg NEMO_IMAGE)",
            file=sys.stderr,
        )
        return 1
    print(f"ok: {PROJECT}[{','.join(args.extras)}] requirements are satisfied")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
