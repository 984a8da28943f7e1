"""``translearn-compare`` internals: read runs, group them, test the transfer gain, write the outputs."""
