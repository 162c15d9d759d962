"""A child process that must not outlive its parent.

In a pod, the kubelet kills every process of the container. Outside one (``sftctl run --local``, the
test pod runner, a shell) a SIGKILLed parent (OOM kill, ``kill -9``, a killed pod's process group) leaves
its children running: sft-prep's pool workers, torchrun under ``sft-torchrun``, and the sft-train ranks
under torchrun, which start in sessions of their own and would wait in a collective for a peer that is
gone, holding memory and CPU.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1
"""linux/prctl.h: the signal a process gets when its parent dies."""


def die_with_parent(parent_pid: int, exit_code: int = 1) -> None:
    """Have the kernel SIGKILL this process when its parent dies (Linux ``PR_SET_PDEATHSIG``). If the
    parent died before the call, exit now with ``exit_code``. A no-op where prctl does not exist.
    Fork-safe (no locks, no threads): usable as a ``preexec_fn``."""
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    except (OSError, AttributeError):  # pragma: no cover - no libc prctl
        return
    if os.getppid() != parent_pid:
        os._exit(exit_code)
