"""Training engines: ``megatron`` (Megatron-Bridge, imported lazily) and ``hf`` (transformers).

Both read the same packed Parquet and train on the same (tokens, labels, loss mask) triples; see
:mod:`sft_train.packed_data`.
"""
