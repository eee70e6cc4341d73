"""The whole simulated outside world of the demo: Invoice Cloud, FTPS and SFTP, in one object.

``SimStack`` starts one SOAP server with the Invoice Cloud simulator, one FTPS server
(explicit TLS, certificate from a CA generated in ``state_dir/pki``) and one SFTP server
(password and key auth, host key kept in ``state_dir``), all on ``host`` (127.0.0.1 unless
the wildcard address is passed explicitly, for the simulator container of docker-compose).

Every biller YAML in ``billers_dir`` gets, at the first start, a biller GUID and web-service
key in the IC simulator and a user (password, and for SFTP a client key) on the server of
its transfer protocol, whose home holds its inbox. Those secrets are generated here
(uuid4 / secrets) and kept in ``state_dir/secrets.json`` (mode 0600) so a restart keeps
them; they are never in the repository. ``connections()`` / ``env()`` give the Airflow
connections (``AIRFLOW_CONN_<ID>`` JSON) that point at the running servers.

Layout of ``state_dir`` (mode 0700)::

    secrets.json            GUIDs, keys, passwords, SFTP client keys (0600)
    ic_sim.sqlite           the IC simulator's state (uploads, invoices, ...)
    inhance_sim.sqlite      the inHance and AUS CIS simulators' state (icbsim/cis_stack.py:
    aus_sim.sqlite          one endpoint and key per cis_service connection id)
    pki/                    ca.pem (the FTPS connection's ca_file), server.pem, server.key
    sftp_host_ed25519       the SFTP host key (0600)
    ftps/<biller_id>/...    FTPS home of each FTPS biller (inbox inside)
    sftp/<biller_id>/...    SFTP home (chroot) of each SFTP biller
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import asyncssh

from icbridge.config.biller import BillerConfig, default_billers_dir, load_billers
from icbsim.aus import AusSimulator
from icbsim.cis_stack import CisPlan, CisSimulators, plan_cis
from icbsim.ftps import FTPSServer
from icbsim.inhance import InhanceSimulator
from icbsim.invoice_cloud import InvoiceCloudSimulator
from icbsim.net import Lifecycle, is_loopback
from icbsim.sftp import SFTPServer
from icbsim.smtp import SMTPServer
from icbsim.soapserver import SoapServer
from icbsim.stack_state import BillerAccess, Secrets, ensure_pki, env_var_name  # re-exported
from icbsim.tls import Pki

__all__ = ["BillerAccess", "SimStack", "default_billers_dir", "env_var_name"]

WILDCARD_HOSTS = ("0.0.0.0", "::")  # noqa: S104  # accepted only when passed explicitly
FTPS_ADMIN = "sim-admin"
SMTP_USER = "icbridge"
SECRETS_FILE = "secrets.json"

log = logging.getLogger(__name__)


def _emails_export(biller: BillerConfig) -> bool:
    return biller.payment_export is not None and biller.payment_export.delivery == "email"


class SimStack(Lifecycle):
    """IC simulator + FTPS + SFTP for every biller of ``billers_dir``; see the module docstring.

    ``host``: where the servers listen, a loopback address unless ``"0.0.0.0"`` (or ``"::"``)
    is passed explicitly. ``public_host``: the host name written into the connections (what
    clients dial): ``host`` by default, 127.0.0.1 for a wildcard host. The certificate of the
    FTPS server names only 127.0.0.1 and localhost. Ports are free ones unless given.
    """

    def __init__(
        self,
        state_dir: Path,
        host: str = "127.0.0.1",
        billers_dir: Path | None = None,
        *,
        public_host: str | None = None,
        soap_port: int = 0,
        ftps_port: int = 0,
        sftp_port: int = 0,
    ) -> None:
        if host not in WILDCARD_HOSTS and not is_loopback(host):
            raise ValueError(f"refusing to serve the simulators on {host!r}: use 127.0.0.1, or 0.0.0.0 in a container")
        self.state_dir = Path(state_dir).resolve()
        self.host = host
        self.public_host = public_host or ("127.0.0.1" if host in WILDCARD_HOSTS else host)
        self.billers_dir = Path(billers_dir) if billers_dir is not None else default_billers_dir()
        self._ports = {"soap": soap_port, "ftps": ftps_port, "sftp": sftp_port}
        self._soap: SoapServer | None = None
        self._ic: InvoiceCloudSimulator | None = None
        self._ftps: FTPSServer | None = None
        self._sftp: SFTPServer | None = None
        self._pki: Pki | None = None
        self._cis: CisSimulators | None = None
        self._smtp: SMTPServer | None = None  # only when a biller delivers by email
        self._smtp_password = ""
        self._cis_plans: list[CisPlan] = []
        self._access: dict[str, BillerAccess] = {}
        self.skipped: dict[Path, str] = {}  # biller files that failed to load, with the reason

    # lifecycle ------------------------------------------------------------------------------

    def start(self) -> SimStack:
        if self._soap is not None:
            raise RuntimeError("SimStack already started")
        loaded = load_billers(self.billers_dir)
        self.skipped = dict(loaded.errors)
        for path, message in loaded.errors.items():
            log.warning("sim stack: skipping biller file %s: %s", path, message)
        self._check_conn_ids(loaded.billers)

        if not self.state_dir.exists():  # a folder of the user's own keeps its mode
            self.state_dir.mkdir(parents=True)
            self.state_dir.chmod(0o700)
        store = Secrets(self.state_dir / SECRETS_FILE)
        ftps_root, sftp_root = self.state_dir / "ftps", self.state_dir / "sftp"
        access: dict[str, BillerAccess] = {}
        for biller in loaded.billers:
            transfer = biller.invoices.transfer if biller.invoices is not None else None
            if transfer is None and biller.payment_export is not None:  # Logis export over FTPS/SFTP
                transfer = biller.payment_export.transfer()
            protocol = transfer.protocol if transfer is not None else None
            entry = store.biller(biller.biller_id, protocol)
            home = inbox = None
            if transfer is not None:
                home = (ftps_root if protocol == "ftps" else sftp_root) / biller.biller_id
                inbox = home / transfer.inbox.strip("/")
            access[biller.biller_id] = BillerAccess(
                biller=biller,
                biller_guid=entry["biller_guid"],
                web_service_key=entry["web_service_key"],
                protocol=protocol,
                user=biller.biller_id if protocol else None,
                password=entry.get("transfer_password"),
                client_key=entry.get("client_key"),
                home=home,
                inbox=inbox,
            )
        self._cis_plans, cis_changed = plan_cis(loaded.billers, store.data)
        store.changed = store.changed or cis_changed
        admin_password = store.value("ftps_admin_password")
        self._smtp_password = store.value("smtp_password")
        store.save()
        self._access = access

        try:
            self._start_servers(ftps_root, sftp_root, admin_password)
        except BaseException:
            self.stop()
            raise
        return self

    def _check_conn_ids(self, billers: list[BillerConfig]) -> None:
        seen: dict[str, str] = {}
        for biller in billers:
            ids = [biller.ic_conn_id]
            if biller.invoices is not None:
                ids.append(biller.invoices.transfer.conn_id)
            if biller.cis_service is not None:
                ids.extend(biller.cis_service.conn_ids())
            if biller.payment_export is not None and biller.invoices is None:
                ids.append(biller.payment_export.conn_id)
            for conn_id in ids:
                other = seen.setdefault(conn_id, biller.biller_id)
                if other != biller.biller_id or ids.count(conn_id) > 1:
                    raise ValueError(f"connection id {conn_id!r} is used twice (biller {other}, {biller.biller_id})")

    def _start_servers(self, ftps_root: Path, sftp_root: Path, admin_password: str) -> None:
        any_host = self.host in WILDCARD_HOSTS
        self._soap = SoapServer(self.host, self._ports["soap"])
        self._ic = InvoiceCloudSimulator(self.state_dir / "ic_sim.sqlite", self._soap)
        for item in self._access.values():
            self._ic.add_biller(item.biller_guid, item.web_service_key, item.biller.bid)
        self._cis = CisSimulators(self.state_dir, self._soap, self._cis_plans)
        self._soap.start()

        for item in self._access.values():
            if item.inbox is not None:
                item.inbox.mkdir(parents=True, exist_ok=True)

        public = () if is_loopback(self.public_host) else (self.public_host,)
        self._pki = ensure_pki(self.state_dir / "pki", public)
        ftps_users = {
            i.user: (i.password, i.home)
            for i in self._access.values()
            if i.protocol == "ftps" and i.user and i.password and i.home
        }
        self._ftps = FTPSServer(
            ftps_root,
            FTPS_ADMIN,
            admin_password,
            self._pki,
            host=self.host,
            port=self._ports["ftps"],
            extra_users=ftps_users,
            allow_any_host=any_host,
        ).start()

        sftp = [i for i in self._access.values() if i.protocol == "sftp" and i.user and i.password and i.home]
        authorized = {
            i.user: [asyncssh.import_private_key(i.client_key).export_public_key().decode().strip()]
            for i in sftp
            if i.client_key
        }
        self._sftp = SFTPServer(
            sftp_root,
            {i.user: i.password for i in sftp},
            authorized_keys=authorized,
            host_key_path=self.state_dir / "sftp_host_ed25519",
            host=self.host,
            port=self._ports["sftp"],
            homes={i.user: i.home for i in sftp},
            allow_any_host=any_host,
        ).start()

        if any(_emails_export(i.biller) for i in self._access.values()):
            self._smtp = SMTPServer(
                self.host, users={SMTP_USER: self._smtp_password}, pki=self._pki, allow_any_host=any_host
            ).start()

    def stop(self) -> None:
        """Stop every server and close the simulator's DB; safe to call twice."""
        errors: list[BaseException] = []
        for server in (self._ftps, self._sftp, self._soap, self._smtp):
            if server is None:
                continue
            try:
                server.stop()
            except Exception as exc:  # stop the others anyway
                errors.append(exc)
        if self._ic is not None:
            self._ic.stop()
        if self._cis is not None:
            self._cis.stop()
            self._cis = None
        self._ftps = self._sftp = self._soap = self._ic = self._smtp = None
        if errors:
            raise errors[0]


    # what clients need ----------------------------------------------------------------------

    def _running(self) -> tuple[SoapServer, InvoiceCloudSimulator, FTPSServer, SFTPServer, Pki]:
        if self._soap is None or self._ic is None or self._ftps is None or self._sftp is None or self._pki is None:
            raise RuntimeError("SimStack is not started")
        return self._soap, self._ic, self._ftps, self._sftp, self._pki

    @property
    def ic(self) -> InvoiceCloudSimulator:
        return self._running()[1]

    def _cis_sims(self) -> CisSimulators:
        self._running()
        assert self._cis is not None
        return self._cis

    @property
    def inhance(self) -> InhanceSimulator:
        """The inHance simulator (endpoints of every inHance biller with a cis_service)."""
        return self._cis_sims().inhance

    @property
    def aus(self) -> AusSimulator:
        """The AUS CIS simulator (endpoints of every AUS biller with a cis_service)."""
        return self._cis_sims().aus

    @property
    def smtp(self) -> SMTPServer:
        """The SMTP server of the billers that take their payment export by email."""
        self._running()
        if self._smtp is None:
            raise RuntimeError("no biller of this stack delivers by email")
        return self._smtp

    @property
    def ftps(self) -> FTPSServer:
        return self._running()[2]

    @property
    def sftp(self) -> SFTPServer:
        return self._running()[3]

    @property
    def ca_file(self) -> Path:
        """The CA certificate that signed the FTPS server's certificate."""
        return self._running()[4].ca_cert

    @property
    def ic_base_url(self) -> str:
        soap, ic, *_ = self._running()
        return f"http://{self.public_host}:{soap.port}{ic.base_path}"

    @property
    def billers(self) -> dict[str, BillerAccess]:
        """biller_id -> what was set up for it (secrets included)."""
        return dict(self._access)

    def access(self, biller_id: str) -> BillerAccess:
        try:
            return self._access[biller_id]
        except KeyError:
            raise KeyError(f"unknown biller {biller_id!r}; have {', '.join(sorted(self._access))}") from None

    def addresses(self) -> dict[str, str]:
        """What listens where, for people: IC base URL, FTPS and SFTP host:port."""
        soap, _, ftps, sftp, _ = self._running()
        return {
            "invoice_cloud": self.ic_base_url,
            "cis": f"http://{self.public_host}:{soap.port}{{/inhance,/aus}}/<biller_id>/...",
            "ftps": f"{self.public_host}:{ftps.port} (explicit TLS, listening on {self.host})",
            "sftp": f"{self.public_host}:{sftp.port} (listening on {self.host})",
            **({"smtp": f"{self.public_host}:{self._smtp.port} (STARTTLS)"} if self._smtp is not None else {}),
        }

    def connections(self) -> dict[str, dict[str, Any]]:
        """conn_id -> the JSON fields of its ``AIRFLOW_CONN_<ID>`` (the IC, transfer and CIS connections)."""
        soap, _, ftps, sftp, pki = self._running()
        conns: dict[str, dict[str, Any]] = self._cis_sims().connections(f"http://{self.public_host}:{soap.port}")
        for item in self._access.values():
            biller = item.biller
            conns[biller.ic_conn_id] = {
                "conn_type": "invoice_cloud",
                "host": self.ic_base_url,
                "login": item.biller_guid,
                "password": item.web_service_key,
                "extra": {"timeout": 60, "verify": True},
            }
            if _emails_export(biller) and self._smtp is not None:
                conns[biller.payment_export.conn_id] = {  # type: ignore[union-attr]
                    "conn_type": "smtp",
                    "host": self.public_host,
                    "port": self._smtp.port,
                    "login": SMTP_USER,
                    "password": self._smtp_password,
                    "extra": {
                        "disable_ssl": True,  # STARTTLS, verified against the stack's CA
                        "ca_file": str(pki.ca_cert),
                        "from_email": "payments@icbridge.invalid",
                        "timeout": 30,
                    },
                }
            if item.protocol is None:
                continue
            transfer = biller.invoices.transfer if biller.invoices is not None else biller.payment_export.transfer()
            conn_id = transfer.conn_id  # type: ignore[union-attr]
            if item.protocol == "ftps":
                conns[conn_id] = {
                    "conn_type": "icb_ftps",
                    "host": self.public_host,
                    "port": ftps.port,
                    "login": item.user,
                    "password": item.password,
                    "extra": {"ca_file": str(pki.ca_cert), "timeout": 30},
                }
            else:
                conns[conn_id] = {
                    "conn_type": "sftp",
                    "host": self.public_host,
                    "port": sftp.port,
                    "login": item.user,
                    "password": item.password,
                    "extra": {"host_key": sftp.host_key_public, "look_for_keys": "false", "conn_timeout": 30},
                }
        return conns

    def env(self) -> dict[str, str]:
        """``AIRFLOW_CONN_<CONN_ID>`` -> JSON, for the environment of Airflow's processes."""
        return {env_var_name(conn_id): json.dumps(fields) for conn_id, fields in self.connections().items()}

    # files ----------------------------------------------------------------------------------

    def inbox(self, biller_id: str) -> Path:
        """The biller's inbox on disk (inside its FTPS/SFTP home)."""
        inbox = self.access(biller_id).inbox
        if inbox is None:
            raise ValueError(f"biller {biller_id!r} has no invoices transfer")
        return inbox

    def drop_file(self, biller_id: str, local_path: Path, name: str | None = None) -> Path:
        """Put a copy of ``local_path`` into the biller's inbox, as its CIS would; returns the path.

        Copied beside the inbox first and renamed in, so a poll never sees half a file.
        """
        inbox = self.inbox(biller_id)
        target = inbox / (name or Path(local_path).name)
        partial = inbox.parent / f".{target.name}.partial"
        shutil.copyfile(local_path, partial)
        os.replace(partial, target)
        return target
