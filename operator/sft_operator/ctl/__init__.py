"""``sftctl`` (also the kubectl plugin ``kubectl-sft``): submit, follow, inspect and report SFT work.

One module per command group: :mod:`.manifests` (reading the user's YAML through the API models),
:mod:`.cluster` (the official ``kubernetes`` client, configured as kubectl is), :mod:`.tables`
(``get``: kubectl's tables), :mod:`.show` (``watch``/``describe``), :mod:`.logs`, :mod:`.local`
(``run --local``: the same YAML on this machine, no cluster), :mod:`.dryrun` (``run --dry-run=client``:
the children and trainer plan, no cluster), :mod:`.preview` (decode packed bins) and :mod:`.report`
(curves and data counts as PNG + HTML). :mod:`.main` wires them into one argparse CLI.
"""
