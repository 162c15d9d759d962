"""``python -m sft_prep`` is ``sft-prep``."""

from sft_prep.cli import main

raise SystemExit(main())
