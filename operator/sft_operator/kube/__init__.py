"""A thin async Kubernetes REST client (aiohttp) and create-or-adopt helpers."""

from sft_operator.kube.client import ApiError, KubeClient, Resource

__all__ = ["ApiError", "KubeClient", "Resource"]
