"""What both workloads share: config loading, storage URIs, progress reporting, results.

Kept free of Kubernetes and of heavy imports so that `sft_operator.api` can import the workload
config models without pulling torch, pyarrow or tokenizers into the operator.
"""
