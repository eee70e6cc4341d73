"""What the CIS simulators share besides their machinery (icbsim.cis): the business answers
(codes and messages, :class:`Refusal`), an endpoint, the SQLite schema of their state, and a
small valid PDF for bill images."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["ACCOUNT_NOT_FOUND", "CODE_BILL_NOT_FOUND", "CODE_CREDENTIALS", "CODE_INVALID", "CODE_NOT_FOUND",
           "CODE_OTHER", "INVALID_CREDENTIALS", "SCHEMA", "Endpoint", "Refusal", "make_pdf"]

ACCOUNT_NOT_FOUND = "Account not found"
INVALID_CREDENTIALS = "Invalid credentials"
# Codes shared with icbridge.soap.aus (inHance has no codes; its simulator reports the message only).
CODE_NOT_FOUND, CODE_CREDENTIALS, CODE_INVALID, CODE_BILL_NOT_FOUND, CODE_OTHER = 1, 2, 3, 4, 9

SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    biller TEXT NOT NULL, account_number TEXT NOT NULL, customer_name TEXT NOT NULL,
    customer_number TEXT NOT NULL, location_number TEXT NOT NULL, balance TEXT NOT NULL,
    future_balance TEXT NOT NULL, past_due TEXT NOT NULL, email TEXT NOT NULL, phone TEXT NOT NULL,
    cash_only INTEGER NOT NULL, paperless INTEGER NOT NULL, autopay INTEGER NOT NULL,
    PRIMARY KEY (biller, account_number));
CREATE TABLE IF NOT EXISTS received (
    id INTEGER PRIMARY KEY AUTOINCREMENT, biller TEXT NOT NULL, endpoint TEXT NOT NULL,
    method TEXT NOT NULL, account_number TEXT NOT NULL, args TEXT NOT NULL, ok INTEGER NOT NULL,
    message TEXT NOT NULL, received_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS payments (
    id INTEGER PRIMARY KEY AUTOINCREMENT, biller TEXT NOT NULL, endpoint TEXT NOT NULL,
    method TEXT NOT NULL, account_number TEXT NOT NULL, payment_date TEXT NOT NULL,
    amount TEXT NOT NULL, convenience_fee TEXT NOT NULL, payment_type TEXT NOT NULL,
    reference TEXT NOT NULL, document_number TEXT NOT NULL, received_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS changes (
    id INTEGER PRIMARY KEY AUTOINCREMENT, biller TEXT NOT NULL, endpoint TEXT NOT NULL,
    method TEXT NOT NULL, account_number TEXT NOT NULL, field TEXT NOT NULL, value TEXT NOT NULL,
    received_at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS bills (
    biller TEXT NOT NULL, account_number TEXT NOT NULL, bill_number TEXT NOT NULL, content BLOB NOT NULL,
    PRIMARY KEY (biller, account_number, bill_number));
"""


class Refusal(Exception):  # noqa: N818 - a business answer, not an error
    """Raised inside a handler's apply step: answer a business refusal (nothing applied)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Endpoint:
    """One served URL path of one biller, with its own key."""

    biller: str
    name: str
    path: str
    key: str

    def __repr__(self) -> str:
        return f"Endpoint(biller={self.biller!r}, name={self.name!r}, path={self.path!r})"


def make_pdf(text: str) -> bytes:
    """A small valid one-page PDF showing ``text`` (the simulated bill image)."""
    safe = text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
    stream = f"BT /F1 14 Tf 72 720 Td ({safe}) Tj ET".encode("latin-1", "replace")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)
