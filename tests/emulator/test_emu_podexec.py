"""Pure helpers of the pod executor: $(VAR) expansion, path rewriting, index compression."""

from __future__ import annotations

from kubeemu.jobcontroller import compress_indexes
from kubeemu.podexec import expand, rewrite_paths


def test_expand_follows_kubernetes_rules() -> None:
    env = {"A": "1", "B": "two"}
    assert expand("--i $(A) --b=$(B)", env) == "--i 1 --b=two"
    assert expand("$(MISSING) stays", env) == "$(MISSING) stays"
    assert expand("$$(A) is escaped", env) == "$(A) is escaped"


def test_rewrite_paths_only_at_boundaries() -> None:
    mapping = {"/data": "/tmp/x", "/data/cache": "/tmp/cache"}
    assert rewrite_paths("/data/out", mapping) == "/tmp/x/out"
    assert rewrite_paths("--dir=/data", mapping) == "--dir=/tmp/x"
    assert rewrite_paths("/data/cache/a", mapping) == "/tmp/cache/a"  # longest prefix wins
    assert rewrite_paths("/database/x /other/data", mapping) == "/database/x /other/data"
    assert rewrite_paths("output: /data/out\n", mapping) == "output: /tmp/x/out\n"
    assert rewrite_paths("s3://bucket/data/x", mapping) == "s3://bucket/data/x"


def test_compress_indexes() -> None:
    assert compress_indexes(set()) == ""
    assert compress_indexes({0, 1, 2, 4, 6, 7}) == "0-2,4,6-7"
