"""``python -m sft_train`` — what torchrun runs on every rank."""

from sft_train.cli import main

raise SystemExit(main())
