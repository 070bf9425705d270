"""The ``[[sources]]`` section: one model per kind of source (tcp-client, tcp-server, serial, file, spool).

`SourceConfig` is their union, told apart by ``kind``. `smdrd.config` composes it into `~smdrd.config.Settings`
and checks what needs the plugin registries (formats, handshakes, format options).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Sequence
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator

from smdrd.section import Section, parse_hostport

__all__ = [
    "FileSource",
    "SerialSource",
    "SourceConfig",
    "SpoolSource",
    "TcpClientSource",
    "TcpServerSource",
    "open_to_everyone_warning",
    "placeholder_warnings",
]


class _SourceBase(Section):
    name: str = Field(min_length=1, pattern=r"^[A-Za-z0-9_.-]+$")
    format: str = Field(min_length=1)
    enabled: bool = True
    encoding: str | None = None
    max_line_length: int = Field(default=8192, ge=64, le=1_048_576)
    handshake: str | None = None
    year: int | None = Field(default=None, ge=1990, le=2200)
    format_options: dict[str, Any] = Field(default_factory=dict)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, v: str | None) -> str | None:
        if v is not None:
            import codecs

            try:
                codecs.lookup(v)
            except LookupError:
                raise ValueError(f"expected a Python codec name such as utf-8 or cp1251, got {v!r}") from None
        return v


class TcpClientSource(_SourceBase):
    """smdrd connects to the PBX (IP Office in listen mode, Mitel, NEC, Panasonic...)."""

    kind: Literal["tcp-client"]
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)
    keepalive: bool = True
    connect_timeout: float = Field(default=10.0, gt=0)
    reconnect_min: float = Field(default=1.0, gt=0)
    reconnect_max: float = Field(default=60.0, gt=0)
    password: SecretStr | None = None


class TcpServerSource(_SourceBase):
    """The PBX connects to smdrd (IP Office push, Avaya CM, Siemens, 3CX).

    ``listen`` stays ``0.0.0.0:1150`` by default because a PBX is never on the same host; what keeps strangers
    out is ``allowed_peers`` (``check-config`` and the daemon warn loudly when it is empty on a non-loopback
    address). Connections from outside a non-empty ``allowed_peers`` are refused at once; when
    ``max_connections`` is reached, the connection idle longest (no line end for ``idle_timeout``: a client
    trickling the bytes of an endless line is idle too) is closed to admit the new one; with an empty
    ``allowed_peers`` a connection that sends nothing for ``idle_timeout`` after connecting is closed (a stranger
    holding a slot).
    """

    kind: Literal["tcp-server"]
    listen: str = "0.0.0.0:1150"
    allowed_peers: list[str] = Field(default_factory=list)
    max_connections: int = Field(default=16, ge=1, le=1024)
    #: seconds without a byte after which a connection may be closed to admit a new one at ``max_connections``
    #: (and, with an empty ``allowed_peers``, after which a connection that never sent a byte is closed).
    idle_timeout: float = Field(default=60.0, gt=0, le=86_400)

    @field_validator("listen")
    @classmethod
    def _hostport(cls, v: str) -> str:
        parse_hostport(v)
        return v

    @field_validator("allowed_peers")
    @classmethod
    def _networks(cls, v: list[str]) -> list[str]:
        for item in v:
            _allowed_network(item)
        return [item.strip() for item in v]

    def peer_allowed(self, address: str) -> bool:
        """True when ``address`` is in the allow-list (an empty list allows everyone)."""
        if not self.allowed_peers:
            return True
        return self.peer_listed(address)

    def peer_listed(self, address: str) -> bool:
        """True when ``address`` is in a non-empty allow-list (an empty list lists no one)."""
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in ipaddress.ip_network(net) for net in self.allowed_peers)

    @property
    def open_to_everyone(self) -> bool:
        """True when any host that can reach ``listen`` may connect: no allow-list on a non-loopback address."""
        if self.allowed_peers:
            return False
        host, _ = parse_hostport(self.listen)
        try:
            return not ipaddress.ip_address(host).is_loopback
        except ValueError:
            return host != "localhost"  # a host name: whatever it resolves to, assume the network


def _allowed_network(item: str) -> ipaddress.IPv4Network | ipaddress.IPv6Network:
    """One ``allowed_peers`` entry: an address or a network written exactly (no host bits), never ``/0``."""
    try:
        net = ipaddress.ip_network(item.strip())
    except ValueError as exc:
        if "has host bits set" in str(exc):
            address, _, prefix = item.strip().partition("/")
            shown = ipaddress.ip_network(item.strip(), strict=False)
            raise ValueError(f"{item!r} has host bits set: write {address!r} for that one host, or "
                             f"'{shown.network_address}/{prefix}' for the network") from None
        raise ValueError(f"expected an IP address or network such as 10.0.0.5 or 10.0.0.0/24, "
                         f"got {item!r}") from None
    if net.prefixlen == 0:
        raise ValueError(f"{item!r} allows every address; list the PBX's address (or its network), or leave "
                         f"allowed_peers empty, which check-config and the daemon report as open to everyone")
    return net


class SerialSource(_SourceBase):
    """A serial port (an RS-232 SMDR port, usually through a USB adapter)."""

    kind: Literal["serial"]
    device: str = Field(min_length=1)
    baudrate: int = Field(default=9600, ge=50, le=4_000_000)
    parity: Literal["N", "E", "O", "M", "S"] = "N"
    bytesize: Literal[5, 6, 7, 8] = 8
    stopbits: float = 1
    flow_control: Literal["none", "rtscts", "xonxoff", "dsrdtr"] = "none"
    reopen_interval: float = Field(default=2.0, gt=0)


    @field_validator("stopbits")
    @classmethod
    def _stopbits(cls, v: float) -> float:
        if v not in (1, 1.5, 2):
            raise ValueError(f"expected 1, 1.5 or 2, got {v!r}")
        return v


class FileSource(_SourceBase):
    """A file read once, or followed like ``tail -F``; ``-`` is standard input."""

    kind: Literal["file"]
    path: str = Field(min_length=1)
    follow: bool = False
    from_start: bool = True
    poll_interval: float = Field(default=0.5, gt=0)


class SpoolSource(_SourceBase):
    """A spool directory: every file matching ``pattern`` that lands in ``path`` (a PBX's CDR files pushed
    over SFTP, such as Cisco Unified CM's) read once, each as its own stream, when it has settled."""

    kind: Literal["spool"]
    #: the directory (not read recursively).
    path: str = Field(min_length=1)
    #: which of its files are read: a shell glob on the file name (``cdr_*``).
    pattern: str = Field(default="*", min_length=1)
    #: seconds between looks at the directory.
    poll_interval: float = Field(default=2.0, gt=0, le=3600)
    #: seconds a file must have kept its size and modification time (and be at least this old) before it is
    #: read: a file still being uploaded is left alone.
    settle: float = Field(default=5.0, ge=0, le=86_400)
    #: which settled file first: by ``name`` (CUCM's names carry the time), or by ``mtime`` (then name).
    order: Literal["name", "mtime"] = "name"
    #: what becomes of a file once every line of it is committed: ``keep``, ``delete`` or ``move:<dir>`` (a
    #: relative directory is inside ``path``).
    after: str = "keep"
    #: seconds: a file last modified longer ago is not read, and once read its position is forgotten (bounds
    #: what a kept directory costs); 0 reads every file and remembers each until it leaves the directory.
    ignore_older: float = Field(default=0.0, ge=0)

    @field_validator("after")
    @classmethod
    def _after(cls, v: str, info: ValidationInfo) -> str:
        v = v.strip()
        if v in ("keep", "delete"):
            return v
        kind, sep, target = v.partition(":")
        if not (kind == "move" and sep and target.strip()):
            raise ValueError(f"expected keep, delete or move:<directory> (such as move:done), got {v!r}")
        v = f"move:{target.strip()}"
        path = info.data.get("path")
        if isinstance(path, str) and _move_to(path, v) == os.path.normpath(path):
            raise ValueError(f"{v!r} names the spool directory itself, whose files would then be read again "
                             f"under their new names: name another directory, such as move:done")
        return v

    @field_validator("pattern")
    @classmethod
    def _pattern(cls, v: str) -> str:
        if "/" in v:
            raise ValueError(f"expected a file name pattern such as cdr_*, without a directory, got {v!r}")
        return v

    @property
    def move_to(self) -> str | None:
        """The directory a read file is moved to (``after = "move:<dir>"``), ``None`` for keep or delete."""
        return _move_to(self.path, self.after)


def _move_to(path: str, after: str) -> str | None:
    if not after.startswith("move:"):
        return None
    return os.path.normpath(os.path.join(path, after[len("move:"):]))


SourceConfig = Annotated[
    TcpClientSource | TcpServerSource | SerialSource | FileSource | SpoolSource, Field(discriminator="kind")
]


def open_to_everyone_warning(src: TcpServerSource) -> str:
    """The warning for a tcp-server source with an empty ``allowed_peers`` on a non-loopback address."""
    return (f"empty on {src.listen}: any host that can reach the port may connect and send records as the PBX; "
            "list the PBX's address, such as allowed_peers = [\"10.0.0.5\"]")


#: documentation address ranges (RFC 5737, RFC 3849): what examples use, config/smdrd.example.toml included,
#: and never a PBX's address.
DOCUMENTATION_NETWORKS = tuple(ipaddress.ip_network(n) for n in (
    "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32"))


def _documentation(address: str) -> bool:
    try:
        network = ipaddress.ip_network(address, strict=False)
    except ValueError:
        return False  # a host name
    return any(network.version == doc.version and network.overlaps(doc)
               for doc in DOCUMENTATION_NETWORKS)


def placeholder_warnings(sources: Sequence[SourceConfig]) -> list[tuple[str, str]]:
    """``(key, message)`` for each enabled source that still points at a documentation address, such as the
    example configuration's ``192.0.2.10``: the file is valid, yet that source would wait for a PBX that does
    not exist (``check-config`` says so, as a warning)."""
    out: list[tuple[str, str]] = []
    for i, src in enumerate(sources):
        if not src.enabled:
            continue
        if isinstance(src, TcpClientSource) and _documentation(src.host):
            out.append((f"sources[{i}].host", f"{src.host} is a documentation address (RFC 5737), the example's "
                                              f"placeholder, not a PBX: put the PBX's address here"))
        elif isinstance(src, TcpServerSource):
            placeholders = [p for p in src.allowed_peers if _documentation(p)]
            if placeholders:
                out.append((f"sources[{i}].allowed_peers",
                            f"{', '.join(placeholders)} is a documentation network (RFC 5737), the example's "
                            f"placeholder: list the PBX's address instead, or it is refused"))
    return out
