"""How many CPUs this process may really use: the one answer for sft-prep's process count and the
hf engine's torch threads.

A pod's ``resources.limits.cpu`` is a CFS quota, not an affinity mask: ``os.cpu_count()`` and
``sched_getaffinity`` still show every core of the node, and a runtime that starts one thread per
visible core on a 2-CPU quota is throttled (with one competing process the hf engine took 1.5 s an
iteration on 2 threads against 0.7 s on 1). The quota is read from cgroup v2 (``cpu.max``) or, on
older nodes, cgroup v1 (``cpu.cfs_quota_us`` / ``cpu.cfs_period_us``).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

CGROUP_V2_CPU_MAX = "/sys/fs/cgroup/cpu.max"
CGROUP_V1_CPU_DIRS = ("/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct")


def usable_cpus(
    cgroup_cpu_max: str = CGROUP_V2_CPU_MAX, cgroup_v1_dirs: tuple[str, ...] = CGROUP_V1_CPU_DIRS
) -> int:
    """CPUs this process may really use: its affinity, capped by the cgroup CPU quota rounded up
    (a 2.5-CPU limit gives 3), at least 1."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    quota = _quota_v2(cgroup_cpu_max)
    if quota is None:
        for directory in cgroup_v1_dirs:
            quota = _quota_v1(directory)
            if quota is not None:
                break
    return max(1, min(cpus, quota) if quota is not None else cpus)


def _quota_v2(path: str) -> int | None:
    """``cpu.max`` is ``"<quota> <period>"`` in µs, or ``"max <period>"`` for no limit."""
    try:
        with open(path) as fh:
            quota, period = fh.read().split()[:2]
        return None if quota == "max" else _cpus(int(quota), int(period))
    except (OSError, ValueError):
        return None


def _quota_v1(directory: str) -> int | None:
    """``cpu.cfs_quota_us`` is -1 for no limit."""
    try:
        with open(os.path.join(directory, "cpu.cfs_quota_us")) as fh:
            quota = int(fh.read().strip())
        with open(os.path.join(directory, "cpu.cfs_period_us")) as fh:
            period = int(fh.read().strip())
    except (OSError, ValueError):
        return None
    return None if quota <= 0 else _cpus(quota, period)


def _cpus(quota: int, period: int) -> int | None:
    return max(1, -(-quota // period)) if period > 0 else None


def threads_per_process(env: Mapping[str, str] | None = None, cpus: int | None = None) -> int | None:
    """Compute threads for each of the ``LOCAL_WORLD_SIZE`` processes of this pod (torchrun sets it):
    the usable CPUs shared out, at least 1; None when ``OMP_NUM_THREADS`` is set, which the runtime
    already follows (a person's or torchrun's explicit choice)."""
    env = os.environ if env is None else env
    if env.get("OMP_NUM_THREADS"):
        return None
    try:
        local_world = max(1, int(env.get("LOCAL_WORLD_SIZE", "1")))
    except ValueError:
        local_world = 1
    cpus = usable_cpus() if cpus is None else cpus
    return max(1, cpus // local_world)
