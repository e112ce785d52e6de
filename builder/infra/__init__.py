"""Infrastructure shared by every stage: the one subprocess runner, the one Docker SDK module, the
registry HTTP client and credentials, report.json's typed sections (read here; the pipeline writes
them), the YAML reader, the status printer, default paths, labels, git and clock.

Nothing here imports a stage.
"""
