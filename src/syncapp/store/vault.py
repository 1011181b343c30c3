"""The credential vault: every token and secret the app stores is encrypted at rest.

Encryption is Fernet (AES-128-CBC with HMAC-SHA256, from ``cryptography``) behind
``MultiFernet``, which gives rotation for free: ``SYNCAPP_SECRET_KEY`` holds one or more keys,
comma-separated, newest first. New writes use the newest key, every listed key still decrypts,
and :func:`rotate_all` re-encrypts every stored credential under the newest key so an old key
can then be removed from the list.
"""

from __future__ import annotations

from datetime import datetime

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from sqlalchemy import select
from sqlalchemy.orm import Session

from syncapp.errors import VaultError
from syncapp.store.models import Credential


class Vault:
    """Encrypts and decrypts secrets with the configured keys (newest first)."""

    def __init__(self, keys: str) -> None:
        parts = [k.strip() for k in keys.split(",") if k.strip()]
        if not parts:
            raise VaultError("SYNCAPP_SECRET_KEY is empty: set one or more Fernet keys")
        try:
            self._fernets = [Fernet(k.encode()) for k in parts]
        except (ValueError, TypeError):
            raise VaultError(
                "SYNCAPP_SECRET_KEY must be comma-separated Fernet keys "
                "(generate one with `syncapp vault new-key`)"
            ) from None
        self._multi = MultiFernet(self._fernets)

    def encrypt(self, plaintext: str) -> bytes:
        return self._multi.encrypt(plaintext.encode("utf-8"))

    def decrypt(self, ciphertext: bytes) -> str:
        try:
            return self._multi.decrypt(ciphertext).decode("utf-8")
        except InvalidToken:
            raise VaultError(
                "a stored secret cannot be decrypted with any key in SYNCAPP_SECRET_KEY; "
                "was a key removed before `syncapp vault rotate` ran?"
            ) from None

    def rotate(self, ciphertext: bytes) -> bytes:
        """Re-encrypt under the newest key (decrypting with whichever key works)."""
        try:
            return self._multi.rotate(ciphertext)
        except InvalidToken:
            raise VaultError(
                "a stored secret cannot be decrypted with any configured key"
            ) from None

    def is_current(self, ciphertext: bytes) -> bool:
        """True when ``ciphertext`` was written with the newest key."""
        try:
            self._fernets[0].decrypt(ciphertext)
        except InvalidToken:
            return False
        return True


def put_secret(
    session: Session,
    vault: Vault,
    *,
    shop_id: int | None,
    provider: str,
    name: str,
    value: str,
    expires_at: datetime | None = None,
) -> Credential:
    """Store (insert or replace) one secret, encrypted. The caller commits."""
    row = session.scalar(
        select(Credential).where(
            Credential.shop_id.is_(None) if shop_id is None else Credential.shop_id == shop_id,
            Credential.provider == provider,
            Credential.name == name,
        )
    )
    if row is None:
        row = Credential(shop_id=shop_id, provider=provider, name=name)
        session.add(row)
    row.ciphertext = vault.encrypt(value)
    row.expires_at = expires_at
    session.flush()
    return row


def get_secret(
    session: Session, vault: Vault, *, shop_id: int | None, provider: str, name: str
) -> str | None:
    """The decrypted secret, or None when none is stored."""
    row = session.scalar(
        select(Credential).where(
            Credential.shop_id.is_(None) if shop_id is None else Credential.shop_id == shop_id,
            Credential.provider == provider,
            Credential.name == name,
        )
    )
    return None if row is None else vault.decrypt(row.ciphertext)


def rotate_all(session: Session, vault: Vault, *, batch_size: int = 500) -> int:
    """Re-encrypt every credential not yet under the newest key; returns how many changed.

    Works in batches by id so a large table never sits in memory; the caller commits (or
    each batch is flushed and the whole rotation commits once).
    """
    changed = 0
    last_id = 0
    while True:
        rows = session.scalars(
            select(Credential)
            .where(Credential.id > last_id)
            .order_by(Credential.id)
            .limit(batch_size)
        ).all()
        if not rows:
            return changed
        for row in rows:
            if not vault.is_current(row.ciphertext):
                row.ciphertext = vault.rotate(row.ciphertext)
                changed += 1
        last_id = rows[-1].id
        session.flush()
