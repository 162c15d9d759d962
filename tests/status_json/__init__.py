"""``sft_operator.status.sftrun`` / ``.dataprep`` with the status as the API receives it (its JSON), for
tests that read a derived status as a cluster (or ``kubectl``, or Argo CD) would: ``derive`` returns
``to_json`` of the status model, and ``status_patch`` takes such JSON back (parsed into the model)."""
