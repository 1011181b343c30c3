"""JWT access tokens of the sandbox IAM for other services (RFC 9068), and its JWKS.

A client-credentials request that names a ``resource`` (RFC 8707: the API the token is for,
e.g. the Sync App's ``https://…/api``) gets a self-contained RS256 JWT instead of the opaque
``emt_`` token eManageCRM's own APIs take: ``iss`` (the IAM), ``aud`` (the resource), ``sub`` and
``client_id``, ``scope``, ``account_id`` when narrowed to an account, ``iat``/``exp``/``jti``;
header ``typ: at+jwt`` and the ``kid`` of the key in ``/iam/.well-known/jwks.json``.

The signing key is created once per sandbox beside its database (mode 0600) so tokens outlive
a restart, as they would with a real IAM.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import secrets
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from syncapp.sandbox.emanage.state import EmanageState


def _load_or_create(path: Path) -> rsa.RSAPrivateKey:
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        assert isinstance(key, rsa.RSAPrivateKey)
        return key
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(pem)
    return key


class SigningKey:
    """The IAM's RSA key: signs access tokens, published (public part) as a JWK."""

    def __init__(self, path: Path) -> None:
        self._key = _load_or_create(path)
        public: dict[str, Any] = json.loads(RSAAlgorithm.to_jwk(self._key.public_key()))
        thumbprint = {k: public[k] for k in ("e", "kty", "n")}  # RFC 7638 members, sorted
        canonical = json.dumps(thumbprint, separators=(",", ":"), sort_keys=True).encode()
        self.kid = (
            base64.urlsafe_b64encode(hashlib.sha256(canonical).digest()).rstrip(b"=").decode()
        )
        self.jwk = {**public, "kid": self.kid, "use": "sig", "alg": "RS256"}

    def issue(self, claims: dict[str, Any]) -> str:
        return jwt.encode(
            {**claims, "jti": secrets.token_hex(16)},
            self._key,
            algorithm="RS256",
            headers={"kid": self.kid, "typ": "at+jwt"},
        )


def signing_key(state: EmanageState) -> SigningKey:
    path = state.config.database_path.parent / (state.config.database_path.stem + ".iam-key.pem")
    return SigningKey(path)


def routes(key: SigningKey) -> list[BaseRoute]:
    async def jwks(request: Request) -> Response:
        return JSONResponse({"keys": [key.jwk]}, headers={"Cache-Control": "max-age=300"})

    return [Route("/iam/.well-known/jwks.json", jwks, methods=["GET"])]
