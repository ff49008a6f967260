"""Per-digi worker tokens: HMAC-SHA256 of `namespace/name` under the manager's secret.

A token proves "I am the worker of namespace/name" and nothing else; the
manager checks it on every worker request. The secret is loaded from (or
created in) a file, so a restarted manager accepts the tokens of workers it
did not start itself (Deployments of the kubernetes backend).

A shared worker's connection token (`pool_token`) is the HMAC of
`pool:namespace:gvr:pool`: it opens that pool's event stream and nothing else
(no digi's `namespace/name` can contain `:`, so it never verifies as a digi's
token). The pool receives each assigned digi's own token over that stream.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path


class TokenIssuer:
    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the worker token secret must be at least 16 bytes")
        self._secret = secret

    @classmethod
    def from_file(cls, path: Path) -> TokenIssuer:
        """Read the secret from `path`, creating it (mode 0600) with 32 random bytes if missing."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                f.write(secrets.token_hex(32))
        return cls(path.read_text().strip().encode())

    def token(self, namespace: str, name: str) -> str:
        return hmac.new(self._secret, f"{namespace}/{name}".encode(), hashlib.sha256).hexdigest()

    def verify(self, token: str, namespace: str, name: str) -> bool:
        return hmac.compare_digest(token, self.token(namespace, name))

    def pool_token(self, namespace: str, gvr: str, pool: str) -> str:
        return self.token(f"pool:{namespace}:{gvr}", pool)

    def verify_pool(self, token: str, namespace: str, gvr: str, pool: str) -> bool:
        return hmac.compare_digest(token, self.pool_token(namespace, gvr, pool))
