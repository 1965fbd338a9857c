"""Models at run time: loading and owning them, placement, the micro-batcher, task policies."""
