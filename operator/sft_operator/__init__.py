"""sft-operator: SFTDataPrep and SFTRun custom resources reconciled by a kopf operator."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("sft-operator")
except PackageNotFoundError:  # run from a source tree that was never installed
    __version__ = "0.0.0+unknown"
