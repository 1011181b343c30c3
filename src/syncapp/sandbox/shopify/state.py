"""What every sandbox handler is given: its configuration and its database."""

from __future__ import annotations

from dataclasses import dataclass

from syncapp.sandbox.shopify.config import SandboxConfig
from syncapp.sandbox.shopify.db import SandboxDB


@dataclass
class SandboxState:
    config: SandboxConfig
    db: SandboxDB
