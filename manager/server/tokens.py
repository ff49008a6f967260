"""Per-digi worker tokens: HMAC-SHA256 of `digi:group/version/plural/namespace/name` under the manager's secret.

A token proves "I am the worker of this digi" and nothing else; the manager
checks it on every worker request against the kind *and* the name the request
names. The kind is part of the MAC because two kinds may each have a digi
`ns/x`: a token of `namespace/name` alone let the Lamp `ns/x`'s worker read,
patch and take over the stream of the Room `ns/x`. No part can contain `/`
(group, version and plural are DNS names, namespace and name Kubernetes
names), so the message names exactly one digi. The secret is loaded from (or
created in) a file, so a restarted manager accepts the tokens of workers it
did not start itself (Deployments of the kubernetes backend).

A shared worker's connection token (`pool_token`) is the HMAC of
`pool:namespace:group/version/plural/pool`: it opens that pool's event stream
and nothing else (the prefixes differ, so it never verifies as a digi's token).
The pool receives each assigned digi's own token over that stream.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from manager.types import GVR, ObjectKey


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

    def _mac(self, message: str) -> str:
        return hmac.new(self._secret, message.encode(), hashlib.sha256).hexdigest()

    def token(self, key: ObjectKey) -> str:
        """The token of the worker of digi `key` (its kind, namespace and name)."""
        return self._mac(f"digi:{key.gvr}/{key.namespace}/{key.name}")

    def verify(self, token: str, key: ObjectKey) -> bool:
        return hmac.compare_digest(token, self.token(key))

    def pool_token(self, namespace: str, gvr: GVR, pool: str) -> str:
        return self._mac(f"pool:{namespace}:{gvr}/{pool}")

    def verify_pool(self, token: str, namespace: str, gvr: GVR, pool: str) -> bool:
        return hmac.compare_digest(token, self.pool_token(namespace, gvr, pool))
