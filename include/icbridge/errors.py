"""The product's error hierarchy: one base, one base per layer. No Airflow imports.

    IcbridgeError
    ├── ConfigError     a biller file or setting that cannot be used
    ├── FileError       a file (AUS export, BIF, Logis export, bill PDF) breaks a rule
    ├── TransferError   the file server (FTPS/SFTP/SMTP) refused or failed a transfer
    ├── SoapError       a web-service call: not sent, no answer, an answer that breaks the contract, a fault
    ├── StateError      the state DB failed, or a row's state forbids the step
    └── FlowError       a run did all it could and must still fail (a threshold, a gap, a refusal)

Every error carries ``retry``: whether running the task again may help (an Airflow retry)
or a person or a fix must come first (the task fails at once). The operators turn these into
Airflow's exceptions in one place (icbridge.operators.common.final_errors); an error of the
code itself (a bug) is none of these and takes Airflow's default (retried).

Classes keep their other bases (BadValue is a ValueError, NotSent a requests
ConnectionError, ...), so code that catches those still does.
"""

from __future__ import annotations

from typing import ClassVar

__all__ = ["ConfigError", "FileError", "FlowError", "IcbridgeError", "SoapError", "StateError", "TransferError"]


class IcbridgeError(Exception):
    """Base of every error icbridge raises by design. ``retry`` (class default, an instance may
    set its own): whether a retry of the task may help."""

    retry: bool = False
    layer: ClassVar[str] = ""


class ConfigError(IcbridgeError):
    layer = "config"


class FileError(IcbridgeError):
    layer = "file"


class TransferError(IcbridgeError):
    layer = "transfer"


class SoapError(IcbridgeError):
    layer = "soap"
    retry = True  # a peer or the network failed: Airflow's default, unless a subclass knows better


class StateError(IcbridgeError):
    layer = "state"


class FlowError(IcbridgeError):
    layer = "flow"
