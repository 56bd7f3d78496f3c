"""Encryption at rest of host credentials (SSH passwords and private keys).

Fernet (AES-128-CBC + HMAC-SHA256) under a key derived from the service's secret key, so a database dump
alone reveals nothing. Decrypt only where a transport connects. Imports nothing else from nodeops.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from cryptography.fernet import Fernet, InvalidToken


class SecretBox:
    """Encrypts and decrypts credentials with a key derived from ``secret_key``."""

    def __init__(self, secret_key: bytes) -> None:
        derived = hmac.new(secret_key, b"nodeops host credentials v1", hashlib.sha256).digest()
        self._fernet = Fernet(base64.urlsafe_b64encode(derived))

    def __repr__(self) -> str:
        return "SecretBox(******)"

    def seal(self, plaintext: str) -> bytes:
        return self._fernet.encrypt(plaintext.encode())

    def open(self, sealed: bytes) -> str:
        """The plaintext; raises ValueError (without the ciphertext) when the key does not match."""
        try:
            return self._fernet.decrypt(sealed).decode()
        except InvalidToken:
            raise ValueError("stored credentials cannot be decrypted with this NODEOPS_SECRET_KEY") from None
