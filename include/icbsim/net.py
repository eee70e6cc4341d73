"""Where simulators may listen: the loopback only, unless a deployment says otherwise."""

from __future__ import annotations

import ipaddress
from typing import Self


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def check_loopback(host: str, allow_any_host: bool = False) -> None:
    """Test servers must never listen beyond the machine (PITFALLS: 127.0.0.1 only).

    ``allow_any_host=True`` is the one way around it, for the simulator container of the
    compose deployment, which must be reachable by the other containers of its network.
    """
    if not allow_any_host and not is_loopback(host):
        raise ValueError(f"refusing to bind the test server to non-loopback address {host!r}")


class Lifecycle:
    """`with server:` starts it and always stops it; subclasses define start() and stop()."""

    def start(self) -> Self:  # pragma: no cover - overridden
        raise NotImplementedError

    def stop(self) -> None:  # pragma: no cover - overridden
        raise NotImplementedError

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
