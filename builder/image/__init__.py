"""The build stage: the inputs of a build and their hash, and a rendered context built with
BuildKit through the docker CLI.
"""
