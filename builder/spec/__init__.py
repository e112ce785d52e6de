"""Variant specs: pydantic models, the YAML loader with ``extends``, base profiles, the CI matrix
and Jupyter password hashes. Pure: reads files, runs nothing.
"""
