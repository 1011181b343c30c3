"""eManageCRM IAM access tokens for the Sync API: RS256 JWTs (RFC 9068) checked against the
IAM's JWKS, narrowed to one eManageCRM account, which names the shop.

Required: signature by a key of the JWKS (``kid``), ``alg`` RS256 only (never ``none`` or an
HMAC with the public key), ``typ`` ``at+jwt``, ``iss`` the IAM, ``aud`` this API, ``exp``,
``iat``, ``sub``, and ``account_id``: a token not narrowed to an account could touch every
tenant and is refused. The account is mapped to the shop whose sign-up created or linked it.
Keys are fetched by PyJWT's ``PyJWKClient`` (cached; an unknown ``kid`` refetches once, so
the IAM can rotate keys).
"""

from __future__ import annotations

import jwt
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from syncapp.config import Settings
from syncapp.onboarding.models import EmanageAccount
from syncapp.store.models import Shop
from syncapp.web.sync_api.keys import Principal

log = structlog.get_logger("syncapp.sync_api")
LEEWAY_SECONDS = 30


class IamVerifier:
    """Turns a presented JWT into a :class:`Principal`, or None when it must be refused."""

    def __init__(self, *, issuer: str, audience: str, jwks_url: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self._keys = jwt.PyJWKClient(jwks_url, cache_keys=True, lifespan=300, timeout=5)

    def principal(self, sessions: sessionmaker[Session], token: str) -> Principal | None:
        try:
            header = jwt.get_unverified_header(token)
            if header.get("typ") != "at+jwt" or header.get("alg") != "RS256":
                return None
            key = self._keys.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256"],
                audience=self.audience,
                issuer=self.issuer,
                leeway=LEEWAY_SECONDS,
                options={"require": ["exp", "iat", "iss", "aud", "sub"]},
            )
        except jwt.PyJWKClientConnectionError as exc:
            log.warning("sync_api.jwks_unavailable", error=str(exc))
            return None
        except jwt.PyJWTError as exc:
            log.info("sync_api.token_refused", reason=str(exc))
            return None
        account = claims.get("account_id")
        if not isinstance(account, str) or not account:
            log.info("sync_api.token_refused", reason="no account_id", sub=claims["sub"])
            return None
        with sessions() as session:
            shop = session.scalar(
                select(Shop.domain)
                .join(EmanageAccount, EmanageAccount.shop_id == Shop.id)
                .where(EmanageAccount.account_id == account)
            )
        if shop is None:
            log.info("sync_api.token_refused", reason="unknown account", account=account)
            return None
        scopes = claims.get("scope", "")
        return Principal(
            name=f"iam:{claims['sub']}",
            scopes=frozenset(scopes.split() if isinstance(scopes, str) else ()),
            shop=shop,
        )


def iam_verifier(settings: Settings) -> IamVerifier | None:
    """The verifier of the configured eManageCRM: its IAM at ``<emanage_base_url>/iam``, this
    API at ``<public_url>/api``; None without an eManageCRM (operator keys only)."""
    base = settings.emanage_base_url.rstrip("/")
    if not base:
        return None
    return IamVerifier(
        issuer=f"{base}/iam",
        audience=f"{settings.public_url.rstrip('/')}/api",
        jwks_url=f"{base}/iam/.well-known/jwks.json",
    )
