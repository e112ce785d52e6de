"""Keys, DSSE envelopes and their signatures (securesystemslib does the crypto; tfimg does none of its own).

Signing: a PEM private key from a file or ``env:NAME`` (an encrypted key's password from
``TFIMG_SIGN_KEY_PASSWORD``, read by the CLI); never echoed, logged or written anywhere. ECDSA P-256,
Ed25519 and RSA keys give envelopes cosign verifies with the PEM public key as it is (RSA is signed with
PKCS#1 v1.5 and SHA-256, as cosign checks it); cosign checks ECDSA with SHA-256 only, so a P-384 or P-521
key signs envelopes tfimg verifies but cosign does not (:func:`cosign_note`).

Verifying: every signature of an envelope is tried with every trusted key (the DSSE ``keyid`` is an
unauthenticated hint, and cosign writes it empty), over the DSSE pre-authentication encoding.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from builder.errors import EnvError, UnreadableInput
from builder.infra import datafile
from builder.publish.statements import INTOTO_PAYLOAD, canonical

PASSWORD_ENV = "TFIMG_SIGN_KEY_PASSWORD"
DSSE_TYPE = "application/vnd.dsse.envelope.v1+json"


def _pem(source: str) -> bytes:
    """The PEM text named by ``source``: ``env:NAME`` or a file path. Never echoed."""
    if source.startswith("env:"):
        name = source[4:]
        value = os.environ.get(name)
        if not value:
            raise EnvError(f"--sign-key {source}: the environment variable {name} is not set or empty")
        return value.encode()
    path = Path(source).expanduser()
    if not path.is_file():
        raise EnvError(f"--sign-key: no key file at {path}",
                       hint="Give a PEM private key file, or env:NAME for a variable that holds one.")
    return datafile.read_bytes(path, limit=2**20, what="the --sign-key file")


def load_signer(source: str, password: str | None = None) -> Any:
    """A securesystemslib ``CryptoSigner`` for the PEM private key named by ``source``."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPrivateKey
    from cryptography.hazmat.primitives.serialization import load_pem_private_key
    from securesystemslib.signer import CryptoSigner, SSlibKey

    try:
        key = load_pem_private_key(_pem(source), password.encode() if password else None)
        public = SSlibKey.from_crypto(key.public_key(), scheme="rsa-pkcs1v15-sha256") \
            if isinstance(key, RSAPrivateKey) else None
        return CryptoSigner(key, public)
    except (ValueError, TypeError) as exc:   # the message names no key material
        raise EnvError(f"--sign-key: not a usable PEM private key ({type(exc).__name__}; an encrypted key "
                       f"needs {PASSWORD_ENV})") from None


def cosign_note(signer: Any) -> str | None:
    """Why cosign would not verify this signer's envelopes, or None when it would."""
    from cryptography.hazmat.primitives.asymmetric import ec

    key = getattr(signer, "_private_key", None)
    if isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name != "secp256r1":
        return (f"the signing key is ECDSA {key.curve.name}: cosign checks ECDSA signatures with SHA-256 only, "
                "so `cosign verify-attestation` will not accept these statements (tfimg verify will); use a "
                "P-256, Ed25519 or RSA key for cosign")
    return None


@dataclass(frozen=True)
class TrustedKey:
    """A public key given with ``--key``: its file name, and the securesystemslib keys to try."""

    label: str
    keys: tuple[Any, ...]


def load_public_key(path: Path) -> TrustedKey:
    """A trusted key from a PEM public key file (RSA: PKCS#1 v1.5 and PSS signatures are accepted)."""
    from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey
    from cryptography.hazmat.primitives.serialization import load_pem_public_key
    from securesystemslib.signer import SSlibKey

    if not path.is_file():
        raise EnvError(f"--key: no public key file at {path}")
    try:
        pem = datafile.read_bytes(path, limit=2**20, what="the public key file")
    except UnreadableInput as exc:
        raise EnvError(f"--key {path}: {exc.text}") from None
    try:
        crypto = load_pem_public_key(pem)
        schemes = ["rsa-pkcs1v15-sha256", "rsassa-pss-sha256"] if isinstance(crypto, RSAPublicKey) else [None]
        keys = tuple(SSlibKey.from_crypto(crypto, scheme=s) for s in schemes)
    except (ValueError, TypeError) as exc:   # not PEM, or a key type securesystemslib cannot use
        raise EnvError(f"--key {path}: not a usable PEM public key ({exc})") from None
    return TrustedKey(path.name, keys)


def signer_key(signer: Any) -> TrustedKey:
    """The signer's own public key, as a trusted key (to find the statements it signed before)."""
    return TrustedKey("the signing key", (signer.public_key,))


def envelope(stmt: dict[str, Any], signer: Any | None) -> bytes:
    """The bytes of a DSSE envelope of the statement, signed when ``signer`` is given (else no signatures)."""
    from securesystemslib.dsse import Envelope

    env = Envelope(payload=canonical(stmt), payload_type=INTOTO_PAYLOAD, signatures={})
    if signer is not None:
        env.sign(signer)
    return canonical(env.to_dict())


def key_id(signer: Any | None) -> str | None:
    return str(signer.public_key.keyid) if signer is not None else None


@dataclass(frozen=True)
class Opened:
    """An envelope, parsed (not yet verified)."""

    payload_type: str
    payload: bytes
    signatures: tuple[bytes, ...]
    pae: bytes


def open_envelope(raw: bytes) -> Opened:
    """Parse DSSE envelope bytes. Raises ValueError when they are not one."""
    from securesystemslib.dsse import Envelope

    data = datafile.loads_json(raw, "the envelope", what="it")
    if not isinstance(data, dict) or not isinstance(data.get("payload"), str) \
            or not isinstance(data.get("payloadType"), str) or not isinstance(data.get("signatures"), list):
        raise ValueError("not a DSSE envelope (payload, payloadType and signatures are needed)")
    try:
        payload = base64.b64decode(data["payload"], validate=True)
        sigs = tuple(base64.b64decode(s["sig"], validate=True) for s in data["signatures"]
                     if isinstance(s, dict) and isinstance(s.get("sig"), str))
    except (ValueError, TypeError) as exc:
        raise ValueError(f"not a DSSE envelope ({exc})") from None
    env = Envelope(payload=payload, payload_type=data["payloadType"], signatures={})
    return Opened(data["payloadType"], payload, sigs, env.pae())


def signed_by(opened: Opened, trusted: list[TrustedKey]) -> str | None:
    """The label of the first trusted key one of the envelope's signatures verifies with, or None."""
    from securesystemslib.exceptions import UnverifiedSignatureError, VerificationError
    from securesystemslib.signer import Signature

    for sig in opened.signatures:
        for tk in trusted:
            for key in tk.keys:
                try:
                    key.verify_signature(Signature(key.keyid, sig.hex()), opened.pae)
                    return tk.label
                except (UnverifiedSignatureError, VerificationError, ValueError):
                    continue
    return None
