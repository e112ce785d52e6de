"""The one orchestrator (:mod:`builder.pipeline.orchestrator`) that knows the order of the stages,
and the fan-out of several variants into child processes.
"""
