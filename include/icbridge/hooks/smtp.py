"""SMTP hook for file deliveries: the provider's SmtpHook with a CA file and no blind resend.

Two gaps of ``SmtpHook`` (apache-airflow-providers-smtp 3.2) matter when the email *is*
the delivery:

* TLS trusts only the system store (``ssl_context``: "default" or "none"): a biller relay
  with a private CA, or the demo's test CA, needs ``ca_file`` (as ``icb_ftps`` has).
* ``send_email_smtp`` retries ``sendmail`` on *any* error, ``retry_limit`` times (default
  5): an error after the server took the message sends it again. Here the default is 0;
  the flow's state DB decides about resending.

Connection: conn type ``smtp`` as usual; extras ``disable_ssl`` (true for STARTTLS on 25/587),
``disable_tls``, ``from_email``, ``timeout``, ``retry_limit`` and ``ca_file``.
"""

from __future__ import annotations

import ssl

from airflow.providers.smtp.hooks.smtp import SmtpHook

from icbridge.hooks.base import FailFastConnection

__all__ = ["IcbSmtpHook"]


class IcbSmtpHook(FailFastConnection, SmtpHook):
    """``SmtpHook`` + ``ca_file`` extra, TLS 1.2+, and ``retry_limit`` 0 unless set."""

    hook_name = "SMTP (icbridge)"

    @property
    def smtp_retry_limit(self) -> int:
        return int(self.conn.extra_dejson.get("retry_limit", 0))

    def _build_ssl_context(self) -> ssl.SSLContext | None:
        ca_file = self.conn.extra_dejson.get("ca_file")
        if not ca_file:
            return super()._build_ssl_context()
        context = ssl.create_default_context(cafile=ca_file)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context
