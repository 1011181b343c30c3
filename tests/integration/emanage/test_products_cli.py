"""``syncapp sandbox emanage token SHOP`` run for real: a subprocess against the state of a
served sandbox prints an account token of the shop's tenant that its products API accepts,
and that reaches no other account."""

from __future__ import annotations

import subprocess
import sys
import uuid
from pathlib import Path

import httpx
import pytest

from syncapp.sandbox.emanage import create_app
from tests.integration.emanage.conftest import (
    CLIENT_ID,
    CLIENT_SECRET,
    bearer,
    onboard,
    sandbox_config,
    serve,
)
from tests.subprocesses import child_env

pytestmark = pytest.mark.anyio


def cli_token(data_dir: Path, shop: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "syncapp.cli", "sandbox", "emanage", "token", shop],
        env=child_env(
            {
                "SYNCAPP_ENV": "test",
                "SYNCAPP_DATA_DIR": str(data_dir),
                "SYNCAPP_EMANAGE_CLIENT_ID": CLIENT_ID,
                "SYNCAPP_EMANAGE_CLIENT_SECRET": CLIENT_SECRET,
                "SYNCAPP_LOG_LEVEL": "warning",
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


async def test_the_token_command_prints_a_token_the_products_api_accepts(tmp_path: Path) -> None:
    # The database where the app's settings put the local eManageCRM: <data dir>/sandbox/.
    state = tmp_path / "sandbox"
    state.mkdir()
    with serve(lambda url: create_app(sandbox_config(state, public_url=url))) as url:
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            demo = await onboard(http, "demo.myshopify.com")
            other = await onboard(http, "other.myshopify.com")
            made = await http.post(
                f"/admin/v1/accounts/{demo.account_id}/products",
                json={
                    "name": "Jet Fuel",
                    "status": "active",
                    "currency": "USD",
                    "variants": [{"productPrices": {"DiscountedPrice": {"Value": 19.9}}}],
                },
                headers=bearer(demo.account_token, str(uuid.uuid4())),
            )
            assert made.status_code == 201, made.text

            done = cli_token(tmp_path, "demo")
            assert done.returncode == 0, done.stderr
            token = done.stdout.strip()
            assert token.startswith("emt_")
            listed = await http.get(
                f"/admin/v1/accounts/{demo.account_id}/products", headers=bearer(token)
            )
            assert listed.status_code == 200, listed.text
            assert [p["name"] for p in listed.json()["items"]] == ["Jet Fuel"]
            theirs = await http.get(
                f"/admin/v1/accounts/{other.account_id}/products", headers=bearer(token)
            )
            assert theirs.status_code == 403

            missing = cli_token(tmp_path, "nobody")
            assert missing.returncode == 2
            assert "no account of nobody.myshopify.com" in missing.stderr
