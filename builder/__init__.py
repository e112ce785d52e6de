"""tfimg: hardened, tested, scanned and tagged TensorFlow images from YAML variants.

Stages, each a module that leaves a file under ``build/<variant>/``::

    spec -> render -> build -> checks -> scan/gate -> tags -> publish

``builder.pipeline.orchestrator`` is the one orchestrator that knows their order.
"""

__version__ = "0.1.0"
