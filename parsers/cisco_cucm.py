"""Cisco Unified CM CDR flat files: a names line, a types line, then one CSV record per call leg. No I/O here.

Layout (Cisco "CDR Analysis and Reporting" / "CDR Field Descriptions", CUCM 11.5 to 15; the real sample from
sieteunoseis/cisco-cucm-cdr): line 1 holds the quoted column names, line 2 their SQL types (``INTEGER``,
``VARCHAR(50)``...), then records; strings are quoted, integers are not. The column count grows with each
release (129 to 133), so columns are read **by name**: the parser remembers the last names line it saw and
falls back to `DEFAULT_COLUMNS` (CUCM 14/15, 133 columns; a shorter row is read as its first columns, since
CUCM only appends columns) for a stream that starts without one. Names and types lines are skipped
(``None``); CMR (call quality, ``cdrRecordType`` 2) records and their names line are recognised and skipped
too, as are ``cdrRecordType`` 0 (start) records, which CUCM does not write in practice.

Times (``dateTimeOrigination``, ``dateTimeConnect``, ``dateTimeDisconnect``) are UTC epoch seconds; they are
converted to the source's timezone when one is set, else kept in UTC. ``duration`` is talk time; ring time is
origination to connect (to disconnect when never connected, ``dateTimeConnect`` = 0). IP address columns are
signed 32-bit integers in little-endian byte order (``239138826`` is ``10.248.64.14``) and are decoded in
``extra``.

Direction: CUCM has no direction field. A device whose name starts with one of ``phone_prefixes`` (``SEP``,
``ATA``, ``CSF``...: phones and soft clients) or matches ``internal_devices`` (globs, e.g. voicemail ports) is
internal, any other device (gateways, SIP trunks, often named by IP) is a trunk. Phone to phone is internal,
phone to trunk outbound, trunk to anything inbound, except a trunk-to-trunk record that an internal number
redirected off the network (``lastRedirectDn`` set, and ``finalCalledPartyNumber`` neither the number first
called nor as short as the redirecting number, as an outside number is longer than a directory number: a call
forwarded to an outside number): that one is outbound from ``lastRedirectDn`` to ``finalCalledPartyNumber`` on
the destination trunk, the leg the carrier bills (the caller is kept in ``extra``, ``callingPartyNumber``). A
call forwarded to a voicemail pilot or another directory number stays inbound; list voicemail and other internal
non-phone devices in ``internal_devices`` all the same. Options::

    [sources.format_options]
    phone_prefixes = ["SEP", "ATA", "CSF", "BOT", "TCT", "TAB", "AN"]
    internal_devices = ["CALUNITY*", "CUE*"]

Multi-leg calls: all CDRs of one call share the Global Call ID, so the call key is
``<globalCallId_ClusterID>/<globalCallID_callManagerId>/<globalCallID_callId>`` and legs are numbered as they
arrive. Built-in-bridge recording legs get their own Global Call ID from CUCM; they name the recorded leg in
``origConversationId`` (the recorded call's ``origLegCallIdentifier`` or ``destLegIdentifier``), so they are
given the recorded call's key, a leg number after it and ``extra["leg_type"] = "recording"``. CUCM writes them
before the call they record, so they are held until that call's record arrives (or until `flush`).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from fnmatch import fnmatchcase
from typing import Any

from smdrd.parsing import Parser, ParserContext
from smdrd.record import CallRecord, Direction

from .toolkit import Column, Converter, Layout, check_call_seconds, check_year, digits, seconds

#: the columns of a CUCM 14/15 CDR file, for a stream that starts without its names line.
DEFAULT_COLUMNS = (
    "cdrRecordType", "globalCallID_callManagerId", "globalCallID_callId", "origLegCallIdentifier",
    "dateTimeOrigination", "origNodeId", "origSpan", "origIpAddr", "callingPartyNumber",
    "callingPartyUnicodeLoginUserID", "origCause_location", "origCause_value", "origPrecedenceLevel",
    "origMediaTransportAddress_IP", "origMediaTransportAddress_Port", "origMediaCap_payloadCapability",
    "origMediaCap_maxFramesPerPacket", "origMediaCap_g723BitRate", "origVideoCap_Codec",
    "origVideoCap_Bandwidth", "origVideoCap_Resolution", "origVideoTransportAddress_IP",
    "origVideoTransportAddress_Port", "origRSVPAudioStat", "origRSVPVideoStat", "destLegIdentifier",
    "destNodeId", "destSpan", "destIpAddr", "originalCalledPartyNumber", "finalCalledPartyNumber",
    "finalCalledPartyUnicodeLoginUserID", "destCause_location", "destCause_value", "destPrecedenceLevel",
    "destMediaTransportAddress_IP", "destMediaTransportAddress_Port", "destMediaCap_payloadCapability",
    "destMediaCap_maxFramesPerPacket", "destMediaCap_g723BitRate", "destVideoCap_Codec",
    "destVideoCap_Bandwidth", "destVideoCap_Resolution", "destVideoTransportAddress_IP",
    "destVideoTransportAddress_Port", "destRSVPAudioStat", "destRSVPVideoStat", "dateTimeConnect",
    "dateTimeDisconnect", "lastRedirectDn", "pkid", "originalCalledPartyNumberPartition",
    "callingPartyNumberPartition", "finalCalledPartyNumberPartition", "lastRedirectDnPartition",
    "duration", "origDeviceName", "destDeviceName", "origCallTerminationOnBehalfOf",
    "destCallTerminationOnBehalfOf", "origCalledPartyRedirectOnBehalfOf", "lastRedirectRedirectOnBehalfOf",
    "origCalledPartyRedirectReason", "lastRedirectRedirectReason", "destConversationId",
    "globalCallId_ClusterID", "joinOnBehalfOf", "comment", "authCodeDescription", "authorizationLevel",
    "clientMatterCode", "origDTMFMethod", "destDTMFMethod", "callSecuredStatus", "origConversationId",
    "origMediaCap_Bandwidth", "destMediaCap_Bandwidth", "authorizationCodeValue",
    "outpulsedCallingPartyNumber", "outpulsedCalledPartyNumber", "origIpv4v6Addr", "destIpv4v6Addr",
    "origVideoCap_Codec_Channel2", "origVideoCap_Bandwidth_Channel2", "origVideoCap_Resolution_Channel2",
    "origVideoTransportAddress_IP_Channel2", "origVideoTransportAddress_Port_Channel2",
    "origVideoChannel_Role_Channel2", "destVideoCap_Codec_Channel2", "destVideoCap_Bandwidth_Channel2",
    "destVideoCap_Resolution_Channel2", "destVideoTransportAddress_IP_Channel2",
    "destVideoTransportAddress_Port_Channel2", "destVideoChannel_Role_Channel2", "IncomingProtocolID",
    "IncomingProtocolCallRef", "OutgoingProtocolID", "OutgoingProtocolCallRef", "currentRoutingReason",
    "origRoutingReason", "lastRedirectingRoutingReason", "huntPilotPartition", "huntPilotDN",
    "calledPartyPatternUsage", "IncomingICID", "IncomingOrigIOI", "IncomingTermIOI", "OutgoingICID",
    "OutgoingOrigIOI", "OutgoingTermIOI", "outpulsedOriginalCalledPartyNumber",
    "outpulsedLastRedirectingNumber", "wasCallQueued", "totalWaitTimeInQueue", "callingPartyNumber_uri",
    "originalCalledPartyNumber_uri", "finalCalledPartyNumber_uri", "lastRedirectDn_uri",
    "mobileCallingPartyNumber", "finalMobileCalledPartyNumber", "origMobileDeviceName",
    "destMobileDeviceName", "origMobileCallDuration", "destMobileCallDuration", "mobileCallType",
    "originalCalledPartyPattern", "finalCalledPartyPattern", "lastRedirectingPartyPattern",
    "huntPilotPattern", "origDeviceType", "destDeviceType", "origDeviceSessionID", "destDeviceSessionID",
)
#: the types line that goes with `DEFAULT_COLUMNS` (used by `render` to quote strings, not integers).
DEFAULT_TYPES = (
    "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "VARCHAR(50)",
    "VARCHAR(128)", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER",
    "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "VARCHAR(64)", "VARCHAR(64)", "INTEGER",
    "INTEGER", "INTEGER", "INTEGER", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(128)", "INTEGER", "INTEGER",
    "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER",
    "INTEGER", "INTEGER", "VARCHAR(64)", "VARCHAR(64)", "INTEGER", "INTEGER", "VARCHAR(50)",
    "UNIQUEIDENTIFIER", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(50)", "INTEGER",
    "VARCHAR(129)", "VARCHAR(129)", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER",
    "INTEGER", "VARCHAR(50)", "INTEGER", "VARCHAR(2048)", "VARCHAR(50)", "INTEGER", "VARCHAR(32)",
    "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "VARCHAR(32)", "VARCHAR(50)",
    "VARCHAR(50)", "VARCHAR(64)", "VARCHAR(64)", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER",
    "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "INTEGER", "VARCHAR(32)",
    "INTEGER", "VARCHAR(32)", "INTEGER", "INTEGER", "INTEGER", "VARCHAR(50)", "VARCHAR(50)", "INTEGER",
    "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(50)",
    "VARCHAR(50)", "VARCHAR(50)", "INTEGER", "INTEGER", "VARCHAR(255)", "VARCHAR(255)", "VARCHAR(255)",
    "VARCHAR(255)", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(129)", "VARCHAR(129)", "INTEGER", "INTEGER",
    "INTEGER", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(50)", "VARCHAR(100)", "VARCHAR(100)",
    "VARCHAR(128)", "VARCHAR(128)",
)
DEFAULT_PHONE_PREFIXES = ("SEP", "ATA", "CSF", "BOT", "TCT", "TAB", "AN")
#: columns read into the core record (the rest, when not empty or 0, go to `CallRecord.extra`).
#: The party numbers stay in extra too: which of them is the extension depends on the direction.
_CORE = frozenset({
    "cdrRecordType", "globalCallID_callId", "dateTimeOrigination", "dateTimeConnect", "dateTimeDisconnect",
    "duration", "authorizationCodeValue", "clientMatterCode",
})
_REQUIRED = ("cdrRecordType", "globalCallID_callManagerId", "globalCallID_callId", "dateTimeOrigination",
             "dateTimeConnect", "dateTimeDisconnect", "duration")
#: the fewest columns a CDR has had (CUCM 5): a shorter row without a names line is not a CDR.
_MIN_COLUMNS = 94
#: calls and held recording legs remembered at most, so a stream that never closes calls stays bounded.
MAX_OPEN_CALLS = 10_000
_BIB = re.compile(r"^b[0-9A-Fa-f]{10,}$")


#: how every line is read: CSV, strings quoted (the names line too). What a record's columns mean depends on
#: the last names line (`record_layout`).
LINE = Layout("cisco-cucm", (Column("cdrRecordType", 0, strip=True),), quoted=True, rstrip=False)


def _whole(text: str) -> str:
    t = text.strip()
    if not digits(t):
        raise ValueError(f"expected a whole number, got {text!r}")
    return t


def record_layout(columns: Sequence[str], time: Converter) -> Layout:
    """The columns a CDR's record converts, in the order they are checked, found by name in ``columns`` (the
    names line): the call ids and the duration (whole numbers, kept as text: the duration is bounded once the
    times are known), then the three times, read with ``time`` (epoch seconds to a datetime in the parser's
    timezone, ``None`` for 0).

    Raises:
        KeyError: ``columns`` lacks one of them.
    """
    index = {n: i for i, n in enumerate(columns)}
    whole = ("globalCallID_callManagerId", "globalCallID_callId", "duration")
    times = ("dateTimeOrigination", "dateTimeConnect", "dateTimeDisconnect")
    return Layout("cisco-cucm", [*(Column(n, index[n], _whole) for n in whole),
                                 *(Column(n, index[n], time) for n in times)])


def int_to_ip(value: int) -> str:
    """CUCM's signed 32-bit little-endian IPv4 integer to dotted form (``239138826`` -> ``10.248.64.14``)."""
    b = (value & 0xFFFFFFFF).to_bytes(4, "little")
    return ".".join(str(x) for x in b)


def _is_ip_column(name: str) -> bool:
    return name.endswith(("IpAddr", "_IP", "_IP_Channel2"))


def _strings(options: Mapping[str, Any], key: str, default: Sequence[str]) -> tuple[str, ...]:
    value = options.get(key, default)
    if isinstance(value, str) or not isinstance(value, list | tuple) \
            or not all(isinstance(v, str) for v in value):
        raise ValueError(f"cisco-cucm option {key!r} must be a list of strings, got {value!r}")
    return tuple(value)


class CiscoCUCMParser(Parser):
    """Cisco Unified CM CDR flat files."""

    name = "cisco-cucm"
    description = "Cisco Unified CM CDR files (CSV by column name; legs joined by Global Call ID)"
    option_names = frozenset({"phone_prefixes", "internal_devices"})

    def __init__(self, context: ParserContext | None = None) -> None:
        super().__init__(context)
        opts = self.context.options
        self._phones = tuple(p.upper() for p in _strings(opts, "phone_prefixes", DEFAULT_PHONE_PREFIXES))
        self._internal = tuple(g.upper() for g in _strings(opts, "internal_devices", ()))
        self._columns: tuple[str, ...] = DEFAULT_COLUMNS
        self._index = {n: i for i, n in enumerate(DEFAULT_COLUMNS)}
        self._layout: Layout | None = record_layout(DEFAULT_COLUMNS, self._time)
        #: leg identifier -> (call key, the record of the call) for recording legs that come later.
        #: a call's leg ids -> the call, and whether the leg is its calling (orig) or called (dest) side.
        self._leg_owner: OrderedDict[str, tuple[CallRecord, bool]] = OrderedDict()
        #: call key -> next leg number.
        self._legs: OrderedDict[str, int] = OrderedDict()
        #: recorded leg identifier -> recording legs waiting for the call they record.
        self._held: OrderedDict[str, list[CallRecord]] = OrderedDict()

    def _internal_device(self, device: str) -> bool:
        up = device.upper()
        return up.startswith(self._phones) or any(fnmatchcase(up, g) for g in self._internal)

    def _time(self, text: str) -> datetime | None:
        """A time column's converter: epoch seconds in the context's timezone (UTC without one), 0 for none."""
        t = text.strip()
        if not (digits(t) and len(t) <= 11):
            raise ValueError(f"expected epoch seconds, got {text!r}")
        if t == "0":
            return None
        tz = self.context.timezone
        when = datetime.fromtimestamp(int(t), UTC)
        check_year(when.year, t)
        return when.astimezone(tz) if tz else when

    def _next_leg(self, key: str) -> int:
        leg = self._legs.pop(key, 0)
        self._legs[key] = leg + 1
        if len(self._legs) > MAX_OPEN_CALLS:
            self._legs.popitem(last=False)
        return leg

    def parse(self, line: str) -> Sequence[CallRecord] | None:
        row = LINE.split(line)
        first = row[0].strip() if row else ""
        if first == "cdrRecordType":
            self._columns = tuple(c.strip() for c in row)
            self._index = {n: i for i, n in enumerate(self._columns)}
            try:
                self._layout = record_layout(self._columns, self._time)
            except KeyError:
                self._layout = None  # every record is refused below, naming what the names line lacks
            return None
        if first == "INTEGER":
            return None
        if first in ("0", "2"):
            return None
        if first != "1":
            raise self.error(f"expected record type 1 (CDR), got {first!r}", "cdrRecordType")
        if len(row) != len(self._columns) and not (
                self._columns is DEFAULT_COLUMNS and _MIN_COLUMNS <= len(row) < len(DEFAULT_COLUMNS)):
            # Without a names line, a shorter row is an older release: CUCM only ever appends columns.
            raise self.error(f"expected {len(self._columns)} columns (per the names line), got {len(row)}")
        missing = [c for c in _REQUIRED if c not in self._index]
        if missing or self._layout is None:
            raise self.error(f"the names line lacks {', '.join(missing)}")
        conv = self._layout.extract(row)
        f = dict(zip(self._columns, row, strict=False))
        g = f.get
        origination: datetime | None = conv["dateTimeOrigination"]
        connect: datetime | None = conv["dateTimeConnect"]
        disconnect: datetime | None = conv["dateTimeDisconnect"]
        if origination is None:
            raise self.error("origination time is 0", "dateTimeOrigination")
        try:
            duration = seconds(f["duration"])
        except ValueError as exc:
            raise self.error(str(exc), "duration") from None
        ring_end = connect or disconnect or origination
        ring = max(int((ring_end - origination).total_seconds()), 0)
        check_call_seconds(self.name, ring=ring)  # a connect time years after the origination is no call

        orig_dev, dest_dev = g("origDeviceName", ""), g("destDeviceName", "")
        calling = g("callingPartyNumber", "")
        called = g("originalCalledPartyNumber", "") or g("finalCalledPartyNumber", "")
        final = g("finalCalledPartyNumber", "") or called
        redirected_by = g("lastRedirectDn", "")
        if orig_dev and dest_dev and not self._internal_device(orig_dev) and not self._internal_device(dest_dev) \
                and redirected_by and final != called and len(final) > len(redirected_by):
            # trunk to trunk because an internal number forwarded the call off the network: the leg the carrier
            # bills is the forward out, paid for by the number that forwarded it (the caller stays in extra)
            direction, extension, number, trunk = Direction.OUTBOUND, redirected_by, final, dest_dev
        elif orig_dev and not self._internal_device(orig_dev):
            direction, extension, number, trunk = Direction.INBOUND, final, calling, orig_dev
        elif dest_dev and not self._internal_device(dest_dev):
            direction, extension, number, trunk = Direction.OUTBOUND, calling, called, dest_dev
        else:
            direction, extension, number, trunk = Direction.INTERNAL, calling, called, ""

        extra: dict[str, str] = {}
        for k, v in f.items():
            if k in _CORE or not v or v == "0":
                continue
            if _is_ip_column(k) and digits(v.lstrip("-")) and len(v) <= 11:
                extra[k] = int_to_ip(int(v))
            else:
                extra[k] = v

        call_id: str = conv["globalCallID_callId"]
        own_key = f"{g('globalCallId_ClusterID', '')}/{conv['globalCallID_callManagerId']}/{call_id}"
        record = CallRecord(
            format=self.name,
            start=origination,
            duration=duration,
            ring=ring,
            direction=direction,
            extension=extension,
            number=number,
            trunk=trunk,
            account=g("clientMatterCode", ""),
            auth_code=g("authorizationCodeValue", ""),
            call_id=call_id,
            answered=connect is not None,
            transfer=g("lastRedirectDn", "") if g("lastRedirectDn", "") not in ("", called) else "",
            call_key=own_key,
            extra=extra,
        )

        recorded = g("origConversationId", "0").strip()
        if recorded not in ("", "0") and (_BIB.match(calling) or not dest_dev):
            record = replace(record, extra={**extra, "leg_type": "recording"})
            owner = self._leg_owner.get(recorded)
            if owner is not None:
                return (self._as_recording(record, *owner),)
            self._held.setdefault(recorded, []).append(record)
            out: list[CallRecord] = []
            while len(self._held) > MAX_OPEN_CALLS:
                out.extend(self._release(self._held.popitem(last=False)[1]))
            return out

        record = replace(record, leg=self._next_leg(own_key))
        out = [record]
        for column in ("origLegCallIdentifier", "destLegIdentifier"):
            leg_id = g(column, "0").strip()
            if leg_id in ("", "0"):
                continue
            called_side = column == "destLegIdentifier"
            self._leg_owner[leg_id] = (record, called_side)
            if len(self._leg_owner) > MAX_OPEN_CALLS:
                self._leg_owner.popitem(last=False)
            out.extend(self._as_recording(r, record, called_side) for r in self._held.pop(leg_id, ()))
        return out

    def _as_recording(self, record: CallRecord, owner: CallRecord, called_side: bool) -> CallRecord:
        """A recording leg joined to the call it records. Its extension is the phone whose side it records: on
        an internal call the called side's phone is the call's ``number`` (on an outbound or inbound call the
        only phone is the call's ``extension``, whichever side is recorded)."""
        key = owner.key()
        leg = self._next_leg(key)
        internal_called = called_side and owner.direction is Direction.INTERNAL
        return replace(record, call_key=key, leg=max(leg, 1), direction=owner.direction,
                       extension=owner.number if internal_called else owner.extension, trunk=owner.trunk)

    def _release(self, records: list[CallRecord]) -> list[CallRecord]:
        """Recording legs whose call never came: keep them under their own key, as leg 1."""
        return [replace(r, leg=1) for r in records]

    def flush(self) -> Sequence[CallRecord]:
        out = [r for held in self._held.values() for r in self._release(held)]
        self._held.clear()
        return out

    @classmethod
    def header_lines(cls, at: datetime | None = None) -> list[str]:
        """The names line and the types line a CUCM 14/15 CDR file starts with."""
        return [",".join(f'"{n}"' for n in DEFAULT_COLUMNS), ",".join(DEFAULT_TYPES)]

    @classmethod
    def render(cls, record: CallRecord) -> list[str]:
        """One CUCM 14/15 CDR line (133 columns, `DEFAULT_COLUMNS`)."""
        origination = int(record.start.timestamp())
        ring = record.ring or 0
        connect = origination + ring if record.answered else 0
        disconnect = connect + record.duration if record.answered else origination + ring
        trunk = record.trunk or "SIPTrunk"
        if record.direction is Direction.INBOUND:
            calling, called, orig_dev, dest_dev = record.number, record.extension, trunk, "SEP000000000002"
        elif record.direction is Direction.OUTBOUND:
            calling, called, orig_dev, dest_dev = record.extension, record.number, "SEP000000000001", trunk
        else:
            calling, called, orig_dev, dest_dev = record.extension, record.number, "SEP000000000001", \
                "SEP000000000002"
        call_id = record.call_id if record.call_id.isdigit() else "1"
        values: dict[str, str] = {
            "cdrRecordType": "1",
            "globalCallID_callManagerId": record.extra.get("globalCallID_callManagerId", "1"),
            "globalCallID_callId": call_id, "origLegCallIdentifier": str(int(call_id) * 2 + 1),
            "destLegIdentifier": str(int(call_id) * 2 + 2), "dateTimeOrigination": str(origination),
            "callingPartyNumber": calling, "originalCalledPartyNumber": called,
            "finalCalledPartyNumber": called, "dateTimeConnect": str(connect),
            "dateTimeDisconnect": str(disconnect), "duration": str(record.duration),
            "origDeviceName": orig_dev, "destDeviceName": dest_dev,
            "globalCallId_ClusterID": record.extra.get("globalCallId_ClusterID", "StandAloneCluster"),
            "clientMatterCode": record.account, "authorizationCodeValue": record.auth_code,
            "origCause_value": "16",
        }
        out = []
        for name, typ in zip(DEFAULT_COLUMNS, DEFAULT_TYPES, strict=True):
            v = values.get(name)
            if typ == "INTEGER":
                out.append(v or "0")
            else:
                out.append('"' + (v or "").replace('"', '""') + '"')
        return [",".join(out)]

    @classmethod
    def detect(cls, lines: Sequence[str]) -> float:
        score = 0.0
        for line in lines[:20]:
            if line.startswith(('"cdrRecordType"', "cdrRecordType")):
                return 0.99
            f = line.split(",")
            if len(f) >= 100 and f[0] == "1" and f[4].isdigit() and len(f[4]) == 10:
                score = max(score, 0.8)
        return score
