"""``sft-torchrun <torchrun args…>``: the training pod's entry point, torchrun with preemption kept.

torchrun (``torch.distributed.run``) turns a SIGTERM into a ``SignalException``: it forwards the
signal to its workers, waits ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` seconds (default 30) before it
SIGKILLs them, and exits **1** (torch/distributed/elastic/agent/server/api.py, ``run``; and
multiprocessing/api.py, ``_close``). Exit 1 reads as a permanent failure to PyTorchJob's
``restartPolicy: ExitCode`` and to the operator's podFailurePolicy, though the workers saved a
checkpoint and the run would resume. So this launcher:

* runs torchrun as a child in its own process group (its workers start their own sessions), so a
  SIGTERM sent to the container's process group reaches torchrun once, from here: a second SIGTERM
  would abort torchrun's graceful wait for its workers; the child gets ``PR_SET_PDEATHSIG`` SIGKILL
  (Linux), so a SIGKILL of this launcher (the kubelet's at the end of the grace period, a node
  failure emulated by killing the container's processes) takes torchrun with it;
* forwards SIGTERM and SIGINT to it, so its workers finish their step and save
  (``sft_train.engines.hf_engine``; Megatron-Bridge's ``train.exit_signal_handler``);
* gives the workers time to save: ``TORCH_ELASTIC_SHUTDOWN_TIMEOUT`` defaults to
  :data:`SHUTDOWN_TIMEOUT_S` here (the pod's ``terminationGracePeriodSeconds`` is the real bound:
  the kubelet SIGKILLs the pod after it);
* exits 128 + the signal (143 for SIGTERM, ``EXIT_PREEMPTED``) when it was signalled and torchrun
  did not succeed, else torchrun's own exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Sequence
from types import FrameType

from sft_common.lifetime import die_with_parent

SHUTDOWN_TIMEOUT_S = 3600
"""torchrun's wait for its workers after a signal, unless TORCH_ELASTIC_SHUTDOWN_TIMEOUT is set."""
FORWARDED = (signal.SIGTERM, signal.SIGINT)


def torchrun_argv(args: Sequence[str]) -> list[str]:
    """torchrun as this interpreter runs it (the ``torchrun`` script is ``torch.distributed.run``)."""
    return [sys.executable, "-m", "torch.distributed.run", *args]


def run(args: Sequence[str]) -> int:
    env = dict(os.environ)
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_TIMEOUT_S))
    received: list[int] = []
    child: subprocess.Popen[bytes] | None = None

    def forward(signum: int, frame: FrameType | None) -> None:
        received.append(signum)
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        parent = os.getpid()
        child = subprocess.Popen(
            torchrun_argv(args),
            env=env,
            start_new_session=True,
            preexec_fn=lambda: die_with_parent(parent, 137),  # the launcher has one thread: fork-safe
        )
        if received and child.poll() is None:  # a signal that came while it was starting
            child.send_signal(received[-1])
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if code < 0:  # torchrun itself died of a signal
        code = 128 - code
    if received and code != 0:
        print(
            f"sft-torchrun: {signal.Signals(received[0]).name} forwarded to torchrun; it exited {code}, "
            f"reporting {128 + received[0]} (preempted, resumable)",
            file=sys.stderr,
            flush=True,
        )
        return 128 + received[0]
    return code


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
