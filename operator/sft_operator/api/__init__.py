"""The custom resources' API: pydantic models are the source of truth for the CRDs and the operator.

``group``/``version`` and each kind's names live in :mod:`sft_operator.api.meta`; the Kubernetes part of
a spec (pod template and batch fields) in :mod:`sft_operator.api.podspec` so both kinds share it.
"""

from sft_operator.api.dataprep import SFTDataPrepSpec, SFTDataPrepStatus
from sft_operator.api.meta import DATAPREP, GROUP, VERSION, KindInfo

__all__ = ["DATAPREP", "GROUP", "VERSION", "KindInfo", "SFTDataPrepSpec", "SFTDataPrepStatus"]
