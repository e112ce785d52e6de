"""Tags, publishing and curation: the tags stage (compute -> tags.txt -> apply), push by digest,
evidence and signed statements attached to a digest, promotion and retention. The registry HTTP
client is :mod:`builder.infra.registry_client`.
"""
