"""Infrastructure shared by every stage: the one subprocess runner, the one Docker SDK module,
the report file and its typed sections, the YAML reader, the status printer, labels, git and clock.

Nothing here imports a stage.
"""
