"""What the transfer logic needs from a remote folder, whatever the protocol.

Billers deliver over FTPS or SFTP; flows should not care which. ``RemoteFolder`` is the
small surface they use. It lives in the core (no Airflow import) so flows can be tested
against any object with these methods; ``icbridge.hooks.transfer`` adapts the Airflow hooks
to it. Remote paths are POSIX strings (``/outbox/AUS_20260101.txt``); relative paths are
resolved against the login directory.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import stat
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, Self, runtime_checkable

__all__ = ["RemoteFolder", "atomic_local_file", "parse_list_line", "plain_files"]

log = logging.getLogger(__name__)


@runtime_checkable
class RemoteFolder(Protocol):
    """A remote directory tree reachable over one open connection."""

    def list_names(self, directory: str) -> list[str]:
        """Sorted plain file names (no directories, no paths) directly in ``directory``."""
        ...

    def download(self, remote_path: str, local_path: Path) -> None:
        """Copy a remote file to ``local_path``; a partial file never appears under that name."""
        ...

    def upload(self, local_path: Path, remote_path: str) -> None:
        """Copy a local file to ``remote_path`` (replacing it if it exists)."""
        ...

    def rename(self, src: str, dst: str) -> None:
        """Rename/move a remote file. ``dst`` should not exist (SFTP refuses, FTP replaces)."""
        ...

    def delete(self, remote_path: str) -> None:
        """Remove a remote file (a redelivered export replaces its earlier copy)."""
        ...

    def makedirs(self, directory: str) -> None:
        """Create ``directory`` and missing parents; an existing directory is fine."""
        ...

    def is_dir(self, path: str) -> bool:
        """Whether ``path`` is a folder on the server."""
        ...

    def size(self, remote_path: str) -> int:
        """Size of a remote file in bytes."""
        ...

    def close(self) -> None:
        """Release the connection; safe to call twice."""
        ...

    def __enter__(self) -> Self:
        """The folder itself; leaving the block closes it."""
        ...

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        ...


@contextlib.contextmanager
def atomic_local_file(local_path: Path) -> Iterator[Path]:
    """Yield a temp path beside ``local_path``; move it into place only on success.

    A download cut off half-way must not leave a truncated billing file that a later step
    would pick up as complete.
    """
    local_path = Path(local_path)
    local_path.parent.mkdir(parents=True, exist_ok=True)
    partial = local_path.with_name(f".{local_path.name}.part")
    try:
        yield partial
        os.replace(partial, local_path)
    finally:
        partial.unlink(missing_ok=True)


def parse_list_line(line: str) -> tuple[str, bool] | None:
    """``(name, is_plain_file)`` from one ``LIST`` line, read by ftputil's parsers (Unix
    ``ls -l`` with or without the group column, numeric ids; DOS/IIS style).

    Used when the server has no ``MLSD`` (vsftpd has none). Symlinks and other special
    entries count as not plain files. Returns None for a line neither parser reads
    (e.g. ``total 12``): the caller reports it."""
    if not line.strip() or line.startswith("total "):
        return None
    parsers, parser_error = _parsers()
    for parser in parsers:
        try:
            found = parser.parse_line(line)
        except (parser_error, ValueError):  # not this format (a size or date that is no number: neither)
            continue
        return found._st_name, stat.S_ISREG(found.st_mode)
    return None


@functools.cache
def _parsers() -> tuple[tuple[Any, ...], type[Exception]]:
    with warnings.catch_warnings():  # ftputil 5 warns at import about its own path encoding (not used here)
        warnings.simplefilter("ignore", DeprecationWarning)
        import ftputil.error
        import ftputil.stat

    return (ftputil.stat.UnixParser(), ftputil.stat.MSParser()), ftputil.error.ParserError


def plain_files(names: list[str], listing: list[str]) -> list[str]:
    """Of ``names`` (exact, e.g. from NLST), those the ``LIST`` lines show as plain files.

    A name is matched to the LIST line(s) that end with a blank and the name, so its leading
    blanks (which LIST's columns do not show apart from the padding) are kept as the server
    has them; a name counts when every line it matches is a plain file (a directory or a
    link named alike keeps it out)."""
    out = []
    for name in names:
        lines = [line for line in listing if line.endswith(" " + name)]
        entries = [parse_list_line(line) for line in lines]
        if any(entry is None for entry in entries):
            # NLST names it and LIST does not say what it is: kept (a download of a folder fails loudly;
            # a file left out would never be fetched or reported) and reported
            log.warning("FTP LIST line(s) not understood for %r, taken as a file: %s", name, lines)
            out.append(name)
        elif entries and all(entry[1] for entry in entries if entry is not None):
            out.append(name)
    return out
