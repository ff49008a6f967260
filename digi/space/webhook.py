"""The admission webhook's credentials and settings for the manager of a local dSpace.

The composition webhook (controllers/admission.py) is served by the manager
over TLS and registered by the manager itself (it knows the digi kinds). All
the space provides is a serving cert signed by the dSpace CA and where to
listen, handed to the manager process as environment:

    DIGI_WEBHOOK_BIND_ADDRESS=127.0.0.1:<port>
    DIGI_WEBHOOK_CERT_DIR=<root>/pki/webhook   (tls.crt, tls.key, ca.crt)

`ensure_webhook_cert(pki)` makes the cert once (kept across `up`s, re-issued
if the CA changed); `Space.up` calls it after the CA exists. `webhook_settings`
is that environment without touching files (building the manager component
must not, e.g. for `digi space status`); `webhook_env` is both.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from cryptography import x509
from cryptography.exceptions import InvalidSignature

from digi.space.pki import Pki, issue_cert

HOSTS = ("127.0.0.1", "localhost")
BIND_ENV = "DIGI_WEBHOOK_BIND_ADDRESS"
CERT_DIR_ENV = "DIGI_WEBHOOK_CERT_DIR"


def _signed_by(cert_path: Path, ca_path: Path) -> bool:
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        ca = x509.load_pem_x509_certificate(ca_path.read_bytes())
        cert.verify_directly_issued_by(ca)
    except (OSError, ValueError, TypeError, InvalidSignature):
        return False
    return True


def webhook_dir(pki: Pki) -> Path:
    return pki.dir / "webhook"


def ensure_webhook_cert(pki: Pki, directory: Path | None = None) -> Path:
    """`directory` (default `<pki>/webhook`) with tls.crt, tls.key and ca.crt; returns it."""
    directory = directory or webhook_dir(pki)
    directory.mkdir(parents=True, exist_ok=True)
    cert, key = directory / "tls.crt", directory / "tls.key"
    if not (key.exists() and _signed_by(cert, pki.ca_cert)):
        issue_cert(pki, cert, key, common_name="digi-manager-webhook", hosts=HOSTS)
    shutil.copyfile(pki.ca_cert, directory / "ca.crt")
    return directory


def webhook_settings(pki: Pki, port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """The manager's environment for serving the webhook on host:port with the cert
    `ensure_webhook_cert(pki)` makes."""
    return {BIND_ENV: f"{host}:{port}", CERT_DIR_ENV: str(webhook_dir(pki))}


def webhook_env(pki: Pki, port: int, host: str = "127.0.0.1") -> dict[str, str]:
    """The manager's environment for serving the webhook on host:port, making the cert."""
    ensure_webhook_cert(pki)
    return webhook_settings(pki, port, host)
