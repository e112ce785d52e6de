"""Rendering a variant into a Dockerfile and build context (pure, deterministic). The Jinja
templates live at the top-level ``templates/`` (shipped in the wheel as ``builder/templates``).
"""
