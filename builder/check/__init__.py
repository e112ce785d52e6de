"""The checks stage: the container runner, the CUDA/TensorFlow probe, image facts, the
shipped testinfra suite (:mod:`builder.check.suite`), and the programs copied into the
containers it checks (:mod:`builder.check.incontainer`: files for the image's own Python).
"""
