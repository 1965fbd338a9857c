"""What the long commands (`framecast train`, `evaluate`, `import`) show and record as they run:
``progress`` (a bar on a terminal, plain lines in a log) and ``env`` (the backend, versions and
devices a run ran on, kept in manifests and model cards)."""
