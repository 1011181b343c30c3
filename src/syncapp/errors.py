"""The root of the app's error tree.

    SyncAppError                 anything the app raises on purpose; the message says what to do
    ├── ConfigError              a setting is missing or invalid (names the SYNCAPP_* variable)
    └── VaultError               a secret cannot be encrypted or decrypted with the configured keys

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
