"""Command-line entry points: translearn-train, translearn-eval, translearn-data, translearn-compare."""
