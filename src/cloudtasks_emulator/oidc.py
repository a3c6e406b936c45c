"""Signed tokens for HTTP tasks: Google-style OIDC ID tokens (RS256) and OAuth access tokens.

Cloud Tasks puts a Google-signed ID token in `Authorization: Bearer` for a task with an
`oidc_token`, and an OAuth access token for one with an `oauth_token`. The emulator signs ID
tokens with an RSA key of its own (generated at start, or read from a PEM file) and serves what a
verifier needs next to the REST API: the OpenID discovery document, the keys as JWKS
(`/oauth2/v3/certs`, Google's format for `jwks_uri`) and as PEM certificates (`/oauth2/v1/certs`,
what google-auth's `id_token.verify_token` reads by default). Claims follow Google's ID tokens
for service accounts: `iss` https://accounts.google.com, `aud`, `azp` and `sub` (the account's
numeric id), `email`, `email_verified`, `iat`, `exp` (one hour). Tokens carry real wall-clock
times, not emulated ones, because the application checks them against its own clock.
"""

from __future__ import annotations

import base64
import datetime
import functools
import hashlib
import json
import threading
import time
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

ISSUER = "https://accounts.google.com"
TOKEN_LIFETIME_S = 3600
DEFAULT_SCOPE = "https://www.googleapis.com/auth/cloud-platform"


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64_int(value: int) -> str:
    return _b64(value.to_bytes((value.bit_length() + 7) // 8, "big"))


def account_id(email: str) -> str:
    """Google gives each service account a 21-digit unique id (the token's `sub` and `azp`);
    the emulator derives a stable one from the email."""
    digest = hashlib.sha256(email.encode()).digest()
    return "1" + str(int.from_bytes(digest[:9], "big") % 10**20).zfill(20)


class TokenSigner:
    """One RSA key; `id_token` signs, `jwks`/`pem_certs`/`discovery` publish what verifies."""

    def __init__(self, key_file: str | Path | None = None) -> None:
        self._lock = threading.Lock()
        self._key: rsa.RSAPrivateKey | None = None
        if key_file is not None:  # read now, so that a bad file fails at start
            loaded = serialization.load_pem_private_key(Path(key_file).read_bytes(), None)
            if not isinstance(loaded, rsa.RSAPrivateKey):
                raise ValueError(f"{key_file}: not an RSA private key")
            self._key = loaded
        self._cert_pem: str | None = None
        self._access: dict[str, dict[str, Any]] = {}

    @property
    def key(self) -> rsa.RSAPrivateKey:
        """The signing key; generated on first use (a 2048-bit key takes a moment to make)."""
        with self._lock:
            if self._key is None:
                self._key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            return self._key

    @functools.cached_property
    def key_id(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return hashlib.sha1(der, usedforsecurity=False).hexdigest()

    # -- issuing ---------------------------------------------------------------------------
    def id_token(self, email: str, audience: str, now_s: float | None = None) -> str:
        issued = int(time.time() if now_s is None else now_s)
        sub = account_id(email)
        header = {"alg": "RS256", "kid": self.key_id, "typ": "JWT"}
        claims = {
            "aud": audience,
            "azp": sub,
            "email": email,
            "email_verified": True,
            "exp": issued + TOKEN_LIFETIME_S,
            "iat": issued,
            "iss": ISSUER,
            "sub": sub,
        }
        signing_input = ".".join(
            _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (header, claims)
        )
        signature = self.key.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{_b64(signature)}"

    def access_token(self, email: str, scope: str | None) -> str:
        """An opaque token, as Google's are; `token_info` tells what it stands for."""
        token = "ya29.emulator-" + _b64(hashlib.sha256(f"{email} {scope}".encode()).digest())
        issued = int(time.time())
        with self._lock:
            self._access[token] = {
                "azp": account_id(email),
                "aud": account_id(email),
                "sub": account_id(email),
                "email": email,
                "email_verified": "true",
                "scope": scope or DEFAULT_SCOPE,
                "exp": str(issued + TOKEN_LIFETIME_S),
                "expires_in": str(TOKEN_LIFETIME_S),
                "access_type": "online",
            }
        return token

    def token_info(self, token: str) -> dict[str, Any] | None:
        with self._lock:
            info = self._access.get(token)
        if info is None:
            return None
        left = int(info["exp"]) - int(time.time())
        return {**info, "expires_in": str(max(0, left))}

    # -- publishing ------------------------------------------------------------------------
    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        return {
            "keys": [
                {
                    "kty": "RSA",
                    "alg": "RS256",
                    "use": "sig",
                    "kid": self.key_id,
                    "n": _b64_int(numbers.n),
                    "e": _b64_int(numbers.e),
                }
            ]
        }

    def pem_certs(self) -> dict[str, str]:
        """{kid: self-signed X.509 certificate}, the format of Google's oauth2/v1/certs."""
        key, key_id = self.key, self.key_id
        with self._lock:
            if self._cert_pem is None:
                name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cloud-tasks-emulator")])
                now = datetime.datetime.now(datetime.UTC)
                cert = (
                    x509.CertificateBuilder()
                    .subject_name(name)
                    .issuer_name(name)
                    .public_key(key.public_key())
                    .serial_number(int(key_id[:16], 16))
                    .not_valid_before(now - datetime.timedelta(days=1))
                    .not_valid_after(now + datetime.timedelta(days=3650))
                    .sign(key, hashes.SHA256())
                )
                self._cert_pem = cert.public_bytes(serialization.Encoding.PEM).decode()
            return {key_id: self._cert_pem}

    @staticmethod
    def discovery(base_url: str) -> dict[str, Any]:
        """The OpenID discovery document, pointing at this emulator's keys."""
        return {
            "issuer": ISSUER,
            "jwks_uri": f"{base_url}/oauth2/v3/certs",
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claims_supported": [
                "aud",
                "azp",
                "email",
                "email_verified",
                "exp",
                "iat",
                "iss",
                "sub",
            ],
        }
