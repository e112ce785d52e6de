"""Tags, publishing and curation: tag computation, push by digest, evidence attached to a digest,
the registry HTTP client and promotion/retention.
"""
