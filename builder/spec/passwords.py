"""Jupyter password hashes: argon2, in jupyter_server's ``argon2:<hash>`` format."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

# The parameters jupyter_server.auth.security.passwd uses.
_HASHER = PasswordHasher(memory_cost=10240, time_cost=10, parallelism=8)


def hash_password(password: str) -> str:
    return "argon2:" + _HASHER.hash(password)


def verify(hashed: str, password: str) -> bool:
    if not hashed.startswith("argon2:"):
        return False
    try:
        return _HASHER.verify(hashed[len("argon2:"):], password)
    except (VerificationError, InvalidHashError):
        return False
