"""Pure, synchronous stages that normalise and tag sample batches (no I/O)."""
