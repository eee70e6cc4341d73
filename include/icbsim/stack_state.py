"""What the simulated world keeps between starts (icbsim.stack.SimStack): its secrets file
(``state_dir/secrets.json``, 0600), the test PKI (remade before it expires), what it set up
for each biller, and the variable Airflow reads each connection from."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
from cryptography import x509

from icbridge.config.biller import BillerConfig
from icbsim.tls import Pki, make_test_pki

__all__ = ["BillerAccess", "Secrets", "ensure_pki", "env_var_name"]

PKI_MIN_VALIDITY = dt.timedelta(days=2)


def env_var_name(conn_id: str) -> str:
    """The variable Airflow reads a connection from: ``AIRFLOW_CONN_<CONN_ID>``."""
    return f"AIRFLOW_CONN_{conn_id.upper()}"


@dataclass(frozen=True)
class BillerAccess:
    """What the stack set up for one biller (secrets included: do not log it)."""

    biller: BillerConfig
    biller_guid: str
    web_service_key: str
    protocol: str | None  # "ftps" | "sftp" | None (no invoices section)
    user: str | None
    password: str | None
    client_key: str | None  # SFTP only: OpenSSH private key the server also accepts
    home: Path | None  # the user's home (FTPS) or chroot (SFTP) on disk
    inbox: Path | None  # the inbox on disk, inside home

    @property
    def biller_id(self) -> str:
        return self.biller.biller_id


class Secrets:
    """``state_dir/secrets.json``: created 0600, rewritten atomically, tightened if loosened."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data: dict[str, Any] = {"billers": {}}
        if path.is_file():
            if path.stat().st_mode & 0o077:
                path.chmod(0o600)
            self.data = json.loads(path.read_text(encoding="utf-8"))
            self.data.setdefault("billers", {})
        self.changed = False

    def biller(self, biller_id: str, protocol: str | None) -> dict[str, str]:
        entry = self.data["billers"].setdefault(biller_id, {})
        wanted: dict[str, Any] = {
            "biller_guid": lambda: str(uuid.uuid4()).upper(),
            "web_service_key": lambda: secrets.token_urlsafe(24),
        }
        if protocol is not None:
            wanted["transfer_password"] = lambda: secrets.token_urlsafe(24)
        if protocol == "sftp":
            wanted["client_key"] = lambda: asyncssh.generate_private_key("ssh-ed25519").export_private_key().decode()
        for name, make in wanted.items():
            if not entry.get(name):
                entry[name] = make()
                self.changed = True
        return entry

    def value(self, name: str) -> str:
        if not self.data.get(name):
            self.data[name] = secrets.token_urlsafe(24)
            self.changed = True
        return str(self.data[name])

    def save(self) -> None:
        if not self.changed:
            return
        partial = self.path.with_name(f".{self.path.name}.partial")
        partial.unlink(missing_ok=True)
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(self.data, out, indent=2, sort_keys=True)
            out.write("\n")
        os.replace(partial, self.path)
        self.changed = False


def ensure_pki(directory: Path, dns_names: tuple[str, ...] = ()) -> Pki:
    """The test PKI, remade when its certificates expire within two days (they live 30) or
    the server certificate does not name every host clients dial."""
    pki = Pki(directory / "ca.pem", directory / "server.pem", directory / "server.key")
    if pki.ca_cert.is_file() and pki.server_cert.is_file():
        limit = dt.datetime.now(dt.UTC) + PKI_MIN_VALIDITY
        server = x509.load_pem_x509_certificate(pki.server_cert.read_bytes())
        named = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        stale = not set(dns_names) <= set(named.get_values_for_type(x509.DNSName))
        for cert_path in (pki.ca_cert, pki.server_cert):
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
            stale = stale or cert.not_valid_after_utc < limit
        if stale:
            for path in (pki.ca_cert, pki.server_cert, pki.server_key):
                path.unlink(missing_ok=True)
    return make_test_pki(directory, dns_names)
