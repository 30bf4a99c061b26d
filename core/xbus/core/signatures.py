"""The data-sharing office's Ed25519 signatures: the office signs what it publishes (grants)
with its private key; whoever enforces them holds only the public key and checks.

Keys are PEM files: PKCS#8 for the private key (0600), SubjectPublicKeyInfo for the public
one. A signature is the 64 raw bytes Ed25519 makes, carried as URL-safe base64 text.
"""

from __future__ import annotations

import base64
import binascii
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from xbus.core.errors import ConfigurationError
from xbus.core.secret_files import write_private

PRIVATE_NAME = "office-signing.key"
PUBLIC_NAME = "office-signing.pub"


def ensure_keypair(folder: Path) -> tuple[Path, Path]:
    """The office's key pair in ``folder`` (``office-signing.key``, ``office-signing.pub``),
    made once: the private key is written 0600 from the start, never readable by others."""
    private, public = folder / PRIVATE_NAME, folder / PUBLIC_NAME
    if private.exists() and public.exists():
        return private, public
    folder.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    write_private(private, pem)
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """The office's private key from its PEM file; ``ConfigurationError`` if it is not one."""
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise ConfigurationError(f"cannot read the grant-signing key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigurationError(f"{path} holds no Ed25519 private key")
    return key


def load_public_key(path: Path) -> Ed25519PublicKey:
    """The office's public key from its PEM file; ``ConfigurationError`` if it is not one."""
    try:
        key = serialization.load_pem_public_key(path.read_bytes())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"cannot read the grant-verifying key {path}: {exc}") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigurationError(f"{path} holds no Ed25519 public key")
    return key


def sign(key: Ed25519PrivateKey, message: bytes) -> str:
    """The signature of ``message``, as URL-safe base64 text."""
    return base64.urlsafe_b64encode(key.sign(message)).decode()


def verifies(key: Ed25519PublicKey, message: bytes, signature: str) -> bool:
    """Whether ``signature`` (as ``sign`` writes it) is ``key``'s over ``message``."""
    try:
        key.verify(base64.urlsafe_b64decode(signature.encode()), message)
    except (InvalidSignature, binascii.Error, ValueError):
        return False
    return True


def load_public_keys(path: Path) -> list[Ed25519PublicKey]:
    """Every public key in a PEM file: one, or several while the office's key is rotated
    (the old and the new public key one after the other). ``ConfigurationError`` if the file
    holds none, or something that is not an Ed25519 public key."""
    try:
        text = path.read_text(encoding="ascii")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the grant-verifying key {path}: {exc}") from exc
    end = "-----END PUBLIC KEY-----"
    blocks = [block + end for block in text.split(end) if block.strip()]
    keys = []
    for number, block in enumerate(blocks, 1):
        try:
            key = serialization.load_pem_public_key(block.strip().encode())
        except ValueError as exc:
            raise ConfigurationError(
                f"{path}: key {number} is not a PEM public key: {exc}"
            ) from exc
        if not isinstance(key, Ed25519PublicKey):
            raise ConfigurationError(f"{path}: key {number} is not an Ed25519 public key")
        keys.append(key)
    if not keys:
        raise ConfigurationError(f"{path} holds no public key")
    return keys
