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
  did not succeed;
* else keeps the workers' own verdict, which torchrun loses (it exits 1 whatever its workers exited
  with: ``ChildFailedError`` out of its ``@record`` main): each worker records its exit code under
  ``SFT_EXIT_CODES_DIR`` (:func:`sft_common.result.run_main`), and a config/data error (2) on any
  rank makes this exit 2, so the restart policies fail fast on it;
* with ``--retryable-exit-code=N`` (its own option, before torchrun's), reports a retryable failure
  (exit 1) as N: the PyTorchJob backend passes ``EXIT_RETRY`` (200), since training-operator v1's
  ``restartPolicy: ExitCode`` retries only exit codes >= 128;
* else torchrun's own exit code.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from sft_common.lifetime import die_with_parent
from sft_common.result import EXIT_CODES_DIR_ENV, EXIT_CONFIG, EXIT_FAILED, RETRYABLE_OPTION

SHUTDOWN_TIMEOUT_S = 3600
"""torchrun's wait for its workers after a signal, unless TORCH_ELASTIC_SHUTDOWN_TIMEOUT is set."""
FORWARDED = (signal.SIGTERM, signal.SIGINT)


def torchrun_argv(args: Sequence[str]) -> list[str]:
    """torchrun as this interpreter runs it (the ``torchrun`` script is ``torch.distributed.run``)."""
    return [sys.executable, "-m", "torch.distributed.run", *args]


def split_options(args: Sequence[str]) -> tuple[int | None, list[str]]:
    """(``--retryable-exit-code`` value or None, torchrun's arguments)."""
    rest = list(args)
    if rest and rest[0].startswith(RETRYABLE_OPTION):
        value = rest.pop(0)[len(RETRYABLE_OPTION) :]
        if not value.isdigit() or not 128 <= int(value) <= 255:
            raise SystemExit(
                f"sft-torchrun: {RETRYABLE_OPTION}{value}: expected an exit code from 128 to 255"
            )
        return int(value), rest
    return None, rest


def run(args: Sequence[str]) -> int:
    retry_code, torchrun_args = split_options(args)
    with tempfile.TemporaryDirectory(prefix="sft-exit-codes-") as codes_dir:
        code, received = _torchrun(torchrun_args, codes_dir)
        workers = worker_exit_codes(Path(codes_dir))
    if received and code != 0:
        print(
            f"sft-torchrun: {signal.Signals(received[0]).name} forwarded to torchrun; it exited {code}, "
            f"reporting {128 + received[0]} (preempted, resumable)",
            file=sys.stderr,
            flush=True,
        )
        return 128 + received[0]
    if code != 0 and EXIT_CONFIG in workers:
        print(
            f"sft-torchrun: torchrun exited {code}; a worker exited {EXIT_CONFIG} (config or data error), "
            f"reporting {EXIT_CONFIG} (not retried)",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_CONFIG
    if code == EXIT_FAILED and retry_code is not None:
        print(
            f"sft-torchrun: torchrun exited {code} (retryable), reporting {retry_code} "
            f"({RETRYABLE_OPTION}{retry_code})",
            file=sys.stderr,
            flush=True,
        )
        return retry_code
    return code


def worker_exit_codes(folder: Path) -> set[int]:
    """The exit codes the workers recorded (``sft_common.result.record_exit_code``)."""
    codes: set[int] = set()
    for path in folder.iterdir():
        text = path.read_text().strip()
        if text.lstrip("-").isdigit():
            codes.add(int(text))
    return codes


def _torchrun(args: Sequence[str], codes_dir: str) -> tuple[int, list[int]]:
    """Run torchrun, forwarding signals: (its exit code as a container runtime reports it, the
    signals received)."""
    env = dict(os.environ)
    env.setdefault("TORCH_ELASTIC_SHUTDOWN_TIMEOUT", str(SHUTDOWN_TIMEOUT_S))
    env[EXIT_CODES_DIR_ENV] = codes_dir
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
    return code, received


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] in (["-h"], ["--help"]):
        print(__doc__)
        return 0
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
