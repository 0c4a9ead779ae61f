"""Ed25519 signatures over manifests, and the set of public keys a machine trusts.

A signature is a small JSON document `{"algorithm": "ed25519", "key_id": ..., "signature": base64}` over the
manifest's canonical bytes. The key id is the first 16 hex digits of the sha256 of the raw public key, so a
key is recognised by content, not by file name. Trusted keys are PEM files (`*.pub`) in a folder.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

ALGORITHM = "ed25519"


class SignatureError(ValueError):
    """Missing, malformed, untrusted or wrong signature; the message says which."""


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:16]


def generate_keypair(private_path: Path, public_path: Path) -> str:
    """Write a new private key (mode 0600, never overwritten) and its public key; return the key id."""
    if private_path.exists():
        raise FileExistsError(f"{private_path} exists; refusing to overwrite a signing key")
    private_key = Ed25519PrivateKey.generate()
    private_path.parent.mkdir(parents=True, exist_ok=True)
    public_path.parent.mkdir(parents=True, exist_ok=True)
    pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    descriptor = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        private_key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
    )
    return key_id(private_key.public_key())


def load_private_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise SignatureError(f"cannot read signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise SignatureError(f"{path} is not an ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise SignatureError(f"cannot read public key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise SignatureError(f"{path} is not an ed25519 public key")
    return key


def sign(manifest_bytes: bytes, private_key: Ed25519PrivateKey) -> bytes:
    document = {
        "algorithm": ALGORITHM,
        "key_id": key_id(private_key.public_key()),
        "signature": base64.b64encode(private_key.sign(manifest_bytes)).decode(),
    }
    return json.dumps(document, sort_keys=True).encode()


@dataclass(frozen=True)
class SignatureInfo:
    key_id: str
    key_name: str  # the trusted key file's stem


class TrustStore:
    """The public keys whose signatures this machine accepts (`*.pub` in one folder)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._keys: dict[str, tuple[str, Ed25519PublicKey]] = {}
        if folder.is_dir():
            for path in sorted(folder.glob("*.pub")):
                key = load_public_key(path)
                self._keys[key_id(key)] = (path.stem, key)

    def __len__(self) -> int:
        return len(self._keys)

    def trust(self, public_path: Path) -> str:
        """Copy a public key into the trust folder; return its key id."""
        key = load_public_key(public_path)
        self.folder.mkdir(parents=True, exist_ok=True)
        identifier = key_id(key)
        (self.folder / f"{public_path.stem}.pub").write_bytes(public_path.read_bytes())
        self._keys[identifier] = (public_path.stem, key)
        return identifier

    def verify(self, manifest_bytes: bytes, signature_bytes: bytes | None) -> SignatureInfo:
        """Raise SignatureError unless a trusted key signed exactly these manifest bytes."""
        if not signature_bytes:
            raise SignatureError("the artifact is unsigned")
        try:
            document = json.loads(signature_bytes)
            algorithm, identifier = document["algorithm"], document["key_id"]
            signature = base64.b64decode(document["signature"], validate=True)
        except (ValueError, KeyError, TypeError) as exc:
            raise SignatureError(f"malformed signature document: {exc}") from exc
        if algorithm != ALGORITHM:
            raise SignatureError(f"unsupported signature algorithm {algorithm!r}")
        if identifier not in self._keys:
            raise SignatureError(f"signed by an untrusted key {identifier} (trusted: {', '.join(self._keys) or 'none'}"
                                 f" in {self.folder})")
        name, key = self._keys[identifier]
        try:
            key.verify(signature, manifest_bytes)
        except InvalidSignature as exc:
            raise SignatureError(f"the signature by key {identifier} does not match the manifest (tampered)") from exc
        return SignatureInfo(key_id=identifier, key_name=name)
