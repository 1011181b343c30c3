"""Who the sandbox's one app is in the admin: its name and handle, as ``shopify.app.toml`` says.

The admin frame (``/store/<shop>/apps/<handle>``) and the Admin API's ``App`` object both
need them. ``config.extra["app_name"]`` / ``["app_handle"]`` win when set; otherwise they are
read from the ``shopify.app.toml`` at ``config.extra["app_toml"]`` or in the working
directory, the same file the sandbox takes the app's scopes from.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from syncapp.sandbox.shopify.config import SandboxConfig


@dataclass(frozen=True)
class AppIdentity:
    """The app as the admin lists it."""

    name: str
    handle: str


@cache
def _from_toml(path: Path) -> AppIdentity:
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    name = str(data.get("name") or "").strip()
    handle = str(data.get("handle") or "").strip()
    if not name or not handle:
        raise RuntimeError(f"{path} must set both `name` and `handle` for the admin to list it")
    return AppIdentity(name=name, handle=handle)


def app_identity(config: SandboxConfig) -> AppIdentity:
    """The app's name and handle (see the module docstring for where they come from)."""
    if "app_name" in config.extra and "app_handle" in config.extra:
        return AppIdentity(name=config.extra["app_name"], handle=config.extra["app_handle"])
    toml_path = Path(config.extra.get("app_toml", "shopify.app.toml")).resolve()
    if not toml_path.is_file():
        raise RuntimeError(
            f"cannot find the app's name and handle: {toml_path} does not exist; set"
            " SandboxConfig.extra['app_toml'] to the shopify.app.toml path (or set"
            " extra['app_name'] and extra['app_handle'])"
        )
    return _from_toml(toml_path)
