"""The root of the app's error tree.

    SyncAppError                 anything the app raises on purpose; the message says what to do
    ├── ConfigError              a setting is missing or invalid (names the SYNCAPP_* variable)
    ├── VaultError               a secret cannot be encrypted or decrypted with the configured keys
    └── RefusedEvent             a stored inbound event that must not be applied (dead-lettered)

Each domain adds its own subtree under SyncAppError (connectors add transient/permanent
errors the sync engine can retry or dead-letter).
"""

from __future__ import annotations


class SyncAppError(Exception):
    """Base class of every error the app raises deliberately."""


class ConfigError(SyncAppError):
    """A setting is missing or invalid; the message names the environment variable."""


class VaultError(SyncAppError):
    """A stored secret cannot be decrypted with any configured key, or a key is malformed."""


class RefusedEvent(SyncAppError):
    """An inbound event that must never be applied: its payload is not the topic's shape,
    names another shop than its (unsigned) routing headers, or asks for something not allowed
    now. The worker dead-letters it at once with this message; nothing it would change is
    changed, and retrying cannot help."""
