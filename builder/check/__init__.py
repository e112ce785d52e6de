"""The checks stage: the container runner, the CUDA/TensorFlow probe, image facts, and the
shipped testinfra suite (:mod:`builder.check.suite`).
"""
