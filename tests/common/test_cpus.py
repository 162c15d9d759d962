"""usable_cpus reads a pod's CPU limit the way the kernel exposes it (cgroup v2 cpu.max, or cgroup v1
cpu.cfs_quota_us / cpu.cfs_period_us, both in microseconds; Linux Documentation/admin-guide/cgroup-v2.rst
"cpu.max" and scheduler/sched-bwc.rst), because affinity and os.cpu_count() show the whole node."""

from __future__ import annotations

import os
from pathlib import Path

from sft_common.cpus import usable_cpus


def affinity() -> int:
    return len(os.sched_getaffinity(0))


def v1(tmp_path: Path, quota: str, period: str = "100000") -> str:
    directory = tmp_path / "cpu"
    directory.mkdir(exist_ok=True)
    (directory / "cpu.cfs_quota_us").write_text(quota + "\n")
    (directory / "cpu.cfs_period_us").write_text(period + "\n")
    return str(directory)


def test_cgroup_v2_quota_rounds_up_and_never_exceeds_affinity(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    none = (str(tmp_path / "absent"),)
    cpu_max.write_text("50000 100000\n")  # half a CPU: still one thread
    assert usable_cpus(str(cpu_max), none) == 1
    cpu_max.write_text("150000 100000\n")
    assert usable_cpus(str(cpu_max), none) == min(2, affinity())
    cpu_max.write_text(f"{100000 * (affinity() + 8)} 100000\n")
    assert usable_cpus(str(cpu_max), none) == affinity()
    cpu_max.write_text("max 100000\n")
    assert usable_cpus(str(cpu_max), none) == affinity()


def test_cgroup_v1_quota_is_read_when_there_is_no_v2_file(tmp_path: Path) -> None:
    absent = str(tmp_path / "absent")
    assert usable_cpus(absent, (v1(tmp_path, "100000"),)) == 1
    assert usable_cpus(absent, (v1(tmp_path, "-1"),)) == affinity(), "-1 is no limit"
    assert usable_cpus(absent, (str(tmp_path / "none"), v1(tmp_path, "50000", "25000"))) == min(2, affinity())


def test_unreadable_or_garbled_files_mean_no_limit(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("garbage\n")
    assert usable_cpus(str(cpu_max), (v1(tmp_path, "x"),)) == affinity()
    cpu_max.write_text("100000 0\n")
    assert usable_cpus(str(cpu_max), (str(tmp_path / "absent"),)) == affinity()


def test_threads_are_the_quota_shared_by_the_local_processes() -> None:
    from sft_common.cpus import threads_per_process

    assert threads_per_process({}, cpus=2) == 2
    assert threads_per_process({"LOCAL_WORLD_SIZE": "2"}, cpus=8) == 4
    assert threads_per_process({"LOCAL_WORLD_SIZE": "4"}, cpus=2) == 1
    assert threads_per_process({"OMP_NUM_THREADS": "3"}, cpus=8) is None, "an explicit setting wins"
    assert threads_per_process({"LOCAL_WORLD_SIZE": "x"}, cpus=3) == 3
