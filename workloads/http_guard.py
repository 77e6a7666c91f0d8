"""What the loader's HTTP client may reach, and for how long: a redirect never leads to a link-local
or metadata address, nor further inward than the URL the user wrote (a public URL cannot send the
loader to a private or loopback one), checked on the resolved address before any connection is
made; and a download has a total deadline, which cuts its sockets wherever they are blocked."""

from __future__ import annotations

import contextlib
import ipaddress
import socket
import threading
import time
from urllib.parse import urlsplit

# Cloud metadata services (AWS, GCP and Azure answer on 169.254.169.254, which link-local covers).
METADATA = frozenset(ipaddress.ip_address(a) for a in ("fd00:ec2::254", "100.100.100.200"))
# How far inward an address is: a redirect may keep the class of the URL written or move outward.
RANK = {"global": 0, "private": 1, "loopback": 2}

Address = ipaddress.IPv4Address | ipaddress.IPv6Address


class Refused(Exception):
    """A redirect (or the connection it leads to) that the rules above refuse."""


def classify(address: str) -> str:
    """`forbidden` (link-local, metadata, multicast, unspecified, reserved), `loopback`,
    `private` (anything else that is not globally routable) or `global`."""
    ip: Address = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if ip.is_loopback:  # before is_reserved: ::1 lies in IPv6's reserved ::/8
        return "loopback"
    if ip in METADATA or ip.is_link_local or ip.is_multicast or ip.is_unspecified or \
            ip.is_reserved:
        return "forbidden"
    return "global" if ip.is_global else "private"


def _why(address: str, kind: str) -> str:
    if kind == "forbidden":
        return (f"{address} is a link-local, metadata, multicast or unspecified address (where "
                "cloud metadata services answer)")
    return (f"{address} is a {kind} address and the URL given is not (a redirect never leads "
            "further inward)")


class Download:
    """One download's connections: the deadline over all of them, and the redirect rules."""

    def __init__(self, deadline_s: float) -> None:
        self.deadline_s = deadline_s
        self.ends = time.monotonic() + deadline_s
        self.expired = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._origin: int | None = None  # the RANK of the first address connected to
        self._timer = threading.Timer(deadline_s, self._expire)
        self._timer.daemon = True

    def __enter__(self) -> Download:
        self._timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._timer.cancel()

    def _expire(self) -> None:
        # A socket blocked in recv returns at once once it is shut down, whatever its timeout.
        with self._lock:
            self.expired.set()
            for sock in self._sockets:
                with contextlib.suppress(OSError):  # already closed
                    sock.shutdown(socket.SHUT_RDWR)

    def remaining(self) -> float:
        return max(0.0, self.ends - time.monotonic())

    def check_redirect(self, old: str, new: str) -> None:
        """Refused unless `new` is http(s) and every address its host resolves to may be reached
        from where the download started (see the module docstring)."""
        parts = urlsplit(new)
        if parts.scheme not in ("http", "https"):
            raise Refused(f"redirect refused: {parts.scheme or 'no'} scheme (only http:// and "
                          "https://)")
        for address in self._addresses(parts.hostname or "", parts.port):
            self._check(address)

    def create_connection(self, address: tuple[str, int], timeout: float | None = None,
                          source_address: tuple[str, int] | None = None) -> socket.socket:
        """socket.create_connection with the rules: the first connection (to the URL the user
        wrote) is made as asked; every later one (a redirect) only to addresses checked here,
        so a name that resolves differently the second time gains nothing."""
        host, port = address
        limit = self.remaining() if timeout is None else min(timeout, self.remaining())
        if self._origin is None:
            sock = socket.create_connection(address, limit, source_address)
            self._origin = RANK.get(classify(sock.getpeername()[0]), 0)
        else:
            error: OSError | None = None
            addresses = self._addresses(host, port)  # resolved once: checked is connected
            for checked in addresses:
                self._check(checked)
            for checked in addresses:
                try:
                    sock = socket.create_connection((checked, port), limit, source_address)
                    break
                except OSError as e:
                    error = e
            else:
                raise error or OSError(f"no address for {host}")
        with self._lock:
            if self.expired.is_set():
                sock.close()
                raise TimeoutError("the download deadline passed")
            self._sockets.append(sock)
        return sock

    def _check(self, address: str) -> None:
        kind = classify(address)
        origin = self._origin if self._origin is not None else RANK["global"]
        if kind == "forbidden" or RANK[kind] > origin:
            raise Refused(f"redirect refused before connecting: {_why(address, kind)}")

    @staticmethod
    def _addresses(host: str, port: int | None) -> list[str]:
        try:
            infos = socket.getaddrinfo(host, port or 80, type=socket.SOCK_STREAM)
        except socket.gaierror as e:
            raise OSError(f"cannot resolve {host}: {e.strerror}") from None
        return list(dict.fromkeys(str(info[4][0]) for info in infos))
