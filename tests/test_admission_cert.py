"""The webhook's serving cert for a local dSpace (digi/space/webhook.py)."""

from __future__ import annotations

from pathlib import Path

from cryptography import x509

from digi.space.pki import ensure_pki
from digi.space.webhook import BIND_ENV, CERT_DIR_ENV, webhook_env


def test_cert_is_signed_by_the_space_ca_for_loopback_and_kept(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    env = webhook_env(pki, 9443)
    assert env[BIND_ENV] == "127.0.0.1:9443"
    directory = Path(env[CERT_DIR_ENV])
    cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
    ca = x509.load_pem_x509_certificate(pki.ca_cert.read_bytes())
    cert.verify_directly_issued_by(ca)
    sans = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "localhost" in sans.get_values_for_type(x509.DNSName)
    assert (directory / "ca.crt").read_bytes() == pki.ca_cert.read_bytes()
    before = (directory / "tls.crt").read_bytes()
    webhook_env(pki, 9443)
    assert (directory / "tls.crt").read_bytes() == before  # kept across ups


def test_a_new_ca_reissues_the_cert(tmp_path: Path) -> None:
    pki = ensure_pki(tmp_path / "pki")
    directory = Path(webhook_env(pki, 9443)[CERT_DIR_ENV])
    pki.ca_cert.unlink()
    pki.ca_key.unlink()
    pki = ensure_pki(tmp_path / "pki")
    webhook_env(pki, 9443)
    cert = x509.load_pem_x509_certificate((directory / "tls.crt").read_bytes())
    cert.verify_directly_issued_by(x509.load_pem_x509_certificate(pki.ca_cert.read_bytes()))
