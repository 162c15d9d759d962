"""Pure rendering: custom resource in, child manifests out (no I/O, deterministic)."""
