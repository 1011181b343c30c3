"""The contract the sandbox serves at ``/openapi.json``: docs/contracts/emanage.openapi.yaml,
read once at start. The sandbox serves the project's document, not a copy, so what the app is
built against and what the sandbox says it implements cannot drift apart silently (the
contract tests check the answers against the same file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

# src/syncapp/sandbox/emanage/contract.py → the repository root is four levels up.
DEFAULT_CONTRACT = Path(__file__).resolve().parents[4] / "docs/contracts/emanage.openapi.yaml"


def load_contract(path: Path | None = None) -> dict[str, Any]:
    """The OpenAPI document as a dict; a clear error when the file is missing."""
    source = path or DEFAULT_CONTRACT
    try:
        text = source.read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise FileNotFoundError(
            f"The eManageCRM contract is not at {source}; run from a checkout of the project or "
            "set EmanageSandboxConfig.contract_path."
        ) from exc
    # The C loader when libyaml is there: the pure-Python one takes a noticeable part of start-up.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    document = yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader either way
    if not isinstance(document, dict) or "openapi" not in document:
        raise ValueError(f"{source} is not an OpenAPI document.")
    return document
