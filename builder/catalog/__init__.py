"""``tfimg registry catalog``: a static site of the curated registry, for the people who pick images.

:mod:`~builder.catalog.evidence_source` reads what the registry holds (the one place that knows the
evidence format), :mod:`~builder.catalog.collect` turns it into the frozen :class:`~builder.catalog.models.Catalog`,
and :mod:`~builder.catalog.render` writes HTML, CSS, a little JavaScript, ``catalog.json`` and its JSON Schema.
"""
