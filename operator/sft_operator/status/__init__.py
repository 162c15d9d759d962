"""Pure status derivation: (CR, children, pods) → the CR's status, and the patch to get there."""
