"""The vault encrypts with the newest key and still decrypts with every configured key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from hypothesis import given
from hypothesis import strategies as st

from syncapp.errors import VaultError
from syncapp.store.vault import Vault

KEY_A = Fernet.generate_key().decode()
KEY_B = Fernet.generate_key().decode()


@given(st.text(max_size=2000))
def test_any_text_round_trips(secret: str) -> None:
    """Whatever is encrypted decrypts to the same text."""
    vault = Vault(KEY_A)
    assert vault.decrypt(vault.encrypt(secret)) == secret


def test_ciphertext_does_not_contain_the_plaintext() -> None:
    """The stored bytes do not reveal the secret."""
    token = "shpat_0123456789abcdef0123456789abcdef"
    assert token.encode() not in Vault(KEY_A).encrypt(token)


def test_after_rotation_old_ciphertexts_still_decrypt_and_new_ones_use_the_new_key() -> None:
    """Adding a newest key keeps old secrets readable and writes under the new key."""
    old = Vault(KEY_A).encrypt("secret")
    rotated = Vault(f"{KEY_B},{KEY_A}")
    assert rotated.decrypt(old) == "secret"
    assert not rotated.is_current(old)
    fresh = rotated.encrypt("secret")
    assert rotated.is_current(fresh)
    assert Vault(KEY_B).decrypt(fresh) == "secret"


def test_rotate_rewrites_under_the_newest_key() -> None:
    """rotate() output is readable with the newest key alone."""
    old = Vault(KEY_A).encrypt("secret")
    assert Vault(KEY_B).decrypt(Vault(f"{KEY_B},{KEY_A}").rotate(old)) == "secret"


def test_a_removed_key_gives_an_actionable_error() -> None:
    """Decrypting without the key that wrote a secret names the setting and the fix."""
    old = Vault(KEY_A).encrypt("secret")
    with pytest.raises(VaultError, match="syncapp vault rotate"):
        Vault(KEY_B).decrypt(old)


@pytest.mark.parametrize("keys", ["", "not-a-fernet-key", " , "])
def test_malformed_keys_are_refused(keys: str) -> None:
    """An empty or malformed SYNCAPP_SECRET_KEY is a VaultError naming it."""
    with pytest.raises(VaultError, match="SYNCAPP_SECRET_KEY"):
        Vault(keys)
