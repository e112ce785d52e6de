"""The pipeline: the one orchestrator (:mod:`builder.pipeline.orchestrator`) that knows the order of the
stages, the run context decided once (:mod:`~builder.pipeline.context`), each stage with its reuse
(:mod:`~builder.pipeline.steps`), the one writer of report.json (:mod:`~builder.pipeline.record`), the
single-stage commands (:mod:`~builder.pipeline.single`), the gate on published evidence
(:mod:`~builder.pipeline.gatekeeping`), bake files and the fan-out of several variants.
"""
