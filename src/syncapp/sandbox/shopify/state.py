"""What every sandbox handler is given: its configuration, its database, its API faults."""

from __future__ import annotations

from dataclasses import dataclass, field

from syncapp.sandbox.shopify.config import SandboxConfig
from syncapp.sandbox.shopify.db import SandboxDB
from syncapp.sandbox.shopify.faults import FaultSwitch


@dataclass
class SandboxState:
    config: SandboxConfig
    db: SandboxDB
    faults: FaultSwitch = field(default_factory=FaultSwitch)
