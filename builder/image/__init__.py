"""The build stage: a rendered context built with BuildKit through the docker CLI.
"""
