"""SMPP 3.4 wire codec: PDU dataclasses <-> bytes, and stream framing.

Sans-IO in the style of h11: nothing here touches a socket or an event loop.

* `encode(pdu)` gives the full PDU octets, header included.
* `decode(frame)` turns one complete frame (header included) into a PDU.
* `Decoder` cuts a byte stream into frames: feed it with `receive_data`, then call
  `next_frame` (or `next_pdu`) until it returns None.

Errors, all `SmppError` subclasses carrying the SMPP `command_status` to answer with:

* `FrameError`: the command_length is impossible; the stream cannot be resynchronised
  and the connection must be dropped.
* `PduDecodeError`: one whole frame was read but cannot be decoded; answer generic_nack
  with the error's `command_status` and `sequence_number`, and carry on.
* `LocalProtocolError`: we were asked to encode something SMPP cannot carry.

C-octet string limits follow SMPP 3.4 and count the terminating NUL, so `system_id`
(max 16) carries at most 15 characters and `message_id` (max 65) at most 64.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Final

from gateway.slots import new_object, slot_setters
from gateway.smpp.pdu import (
    PDU_CLASSES,
    BindTransceiver,
    BindTransceiverResp,
    CommandId,
    CommandStatus,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Tlv,
    TlvTag,
    TlvValue,
    Unbind,
    UnbindResp,
)

MAX_PDU_LENGTH: Final = 65536
HEADER_LENGTH: Final = 16
MAX_SHORT_MESSAGE: Final = 254

_HEADER = struct.Struct(">IIII")
_U32 = struct.Struct(">I")
_TLV_HEADER = struct.Struct(">HH")
_B2 = struct.Struct(">BB")
_B3 = struct.Struct(">BBB")
_B5 = struct.Struct(">BBBBB")

_RINVCMDLEN = CommandStatus.ESME_RINVCMDLEN
_RINVCMDID = CommandStatus.ESME_RINVCMDID
_RINVMSGLEN = CommandStatus.ESME_RINVMSGLEN
_RINVOPTPARSTREAM = CommandStatus.ESME_RINVOPTPARSTREAM
_RINVPARLEN = CommandStatus.ESME_RINVPARLEN
_RINVOPTPARAMVAL = CommandStatus.ESME_RINVOPTPARAMVAL
_RSYSERR = CommandStatus.ESME_RSYSERR


# --------------------------------------------------------------------------- errors


class SmppError(Exception):
    """Base of every codec error. `command_status` is the SMPP status that describes
    the problem (what to put in a generic_nack or a response); `sequence_number` and
    `command_id` are those of the offending PDU when known."""

    default_status: int = _RSYSERR

    def __init__(
        self,
        message: str,
        *,
        command_status: int | None = None,
        sequence_number: int | None = None,
        command_id: int | None = None,
    ) -> None:
        super().__init__(message)
        self.command_status: int = int(
            self.default_status if command_status is None else command_status
        )
        self.sequence_number: int | None = sequence_number
        self.command_id: int | None = command_id


class RemoteProtocolError(SmppError):
    """The peer sent something that is not valid SMPP 3.4."""


class FrameError(RemoteProtocolError):
    """The command_length is below 16 or above MAX_PDU_LENGTH: the byte stream cannot be
    resynchronised and the connection must be dropped."""

    default_status = _RINVCMDLEN


class PduDecodeError(RemoteProtocolError):
    """A whole frame was read but its command id is unknown or its body is malformed.
    Answer generic_nack(command_status, sequence_number) and carry on."""

    default_status = _RINVCMDLEN


class LocalProtocolError(SmppError):
    """We were asked to encode something SMPP 3.4 cannot carry."""


class _BodyError(Exception):
    """Raised inside the body decoders; `decode` turns it into PduDecodeError with the
    frame's header fields filled in."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --------------------------------------------------------------------------- TLV types

# Integer TLVs and their size in octets (SMPP 3.4 §5.3.2). source_telematics_id is
# taken as 2 octets like dest_telematics_id, and ussd_service_op (a 1-octet code) as an
# integer, as smpplib does. A value of another length is kept raw, so nothing is lost.
TLV_INTEGER_SIZE: Final[Mapping[int, int]] = MappingProxyType(
    {
        TlvTag.DEST_ADDR_SUBUNIT: 1,
        TlvTag.DEST_NETWORK_TYPE: 1,
        TlvTag.DEST_BEARER_TYPE: 1,
        TlvTag.DEST_TELEMATICS_ID: 2,
        TlvTag.SOURCE_ADDR_SUBUNIT: 1,
        TlvTag.SOURCE_NETWORK_TYPE: 1,
        TlvTag.SOURCE_BEARER_TYPE: 1,
        TlvTag.SOURCE_TELEMATICS_ID: 2,
        TlvTag.QOS_TIME_TO_LIVE: 4,
        TlvTag.PAYLOAD_TYPE: 1,
        TlvTag.MS_MSG_WAIT_FACILITIES: 1,
        TlvTag.PRIVACY_INDICATOR: 1,
        TlvTag.USER_MESSAGE_REFERENCE: 2,
        TlvTag.USER_RESPONSE_CODE: 1,
        TlvTag.SOURCE_PORT: 2,
        TlvTag.DESTINATION_PORT: 2,
        TlvTag.SAR_MSG_REF_NUM: 2,
        TlvTag.LANGUAGE_INDICATOR: 1,
        TlvTag.SAR_TOTAL_SEGMENTS: 1,
        TlvTag.SAR_SEGMENT_SEQNUM: 1,
        TlvTag.SC_INTERFACE_VERSION: 1,
        TlvTag.CALLBACK_NUM_PRES_IND: 1,
        TlvTag.NUMBER_OF_MESSAGES: 1,
        TlvTag.DPF_RESULT: 1,
        TlvTag.SET_DPF: 1,
        TlvTag.MS_AVAILABILITY_STATUS: 1,
        TlvTag.DELIVERY_FAILURE_REASON: 1,
        TlvTag.MORE_MESSAGES_TO_SEND: 1,
        TlvTag.MESSAGE_STATE: 1,
        TlvTag.USSD_SERVICE_OP: 1,
        TlvTag.DISPLAY_TIME: 1,
        TlvTag.SMS_SIGNAL: 2,
        TlvTag.MS_VALIDITY: 1,
        TlvTag.ITS_REPLY_TYPE: 1,
    }
)

# C-octet string TLVs and their maximum size in octets, NUL included.
TLV_CSTRING_MAX: Final[Mapping[int, int]] = MappingProxyType(
    {
        TlvTag.ADDITIONAL_STATUS_INFO_TEXT: 256,
        TlvTag.RECEIPTED_MESSAGE_ID: 65,
    }
)

# Every other known tag (message_payload, source/dest_subaddress, callback_num,
# callback_num_atag, network_error_code, its_session_info, alert_on_message_delivery)
# is an octet string: its value is always bytes.

_KIND_INT: Final = 1
_KIND_CSTR: Final = 2
_KIND_OCTETS: Final = 3

# tag -> (tag as TlvTag, kind, integer size or C-string max)
_TLV_INFO: dict[int, tuple[int, int, int]] = {}
for _tag in TlvTag:
    if _tag in TLV_INTEGER_SIZE:
        _TLV_INFO[int(_tag)] = (_tag, _KIND_INT, TLV_INTEGER_SIZE[_tag])
    elif _tag in TLV_CSTRING_MAX:
        _TLV_INFO[int(_tag)] = (_tag, _KIND_CSTR, TLV_CSTRING_MAX[_tag])
    else:
        _TLV_INFO[int(_tag)] = (_tag, _KIND_OCTETS, 0)
del _tag


# --------------------------------------------------------------------------- encoding

# The status that describes a bad value in each C-octet string field.
_CSTR_STATUS: dict[str, int] = {
    "system_id": CommandStatus.ESME_RINVSYSID,
    "password": CommandStatus.ESME_RINVPASWD,
    "system_type": CommandStatus.ESME_RINVSYSTYP,
    "address_range": _RINVPARLEN,
    "service_type": CommandStatus.ESME_RINVSERTYP,
    "source_addr": CommandStatus.ESME_RINVSRCADR,
    "destination_addr": CommandStatus.ESME_RINVDSTADR,
    "schedule_delivery_time": CommandStatus.ESME_RINVSCHED,
    "validity_period": CommandStatus.ESME_RINVEXPIRY,
    "message_id": CommandStatus.ESME_RINVMSGID,
}


def _enc_cstr(value: str, maxlen: int, field: str) -> bytes:
    if value == "":
        return b"\0"
    try:
        raw = value.encode("latin-1")
    except UnicodeEncodeError:
        raise LocalProtocolError(
            f"{field}: {value!r} is not latin-1", command_status=_CSTR_STATUS[field]
        ) from None
    except AttributeError:
        raise LocalProtocolError(
            f"{field}: expected str, got {type(value).__name__}",
            command_status=_CSTR_STATUS[field],
        ) from None
    if len(raw) >= maxlen:
        raise LocalProtocolError(
            f"{field}: {len(raw)} octets, at most {maxlen - 1} fit",
            command_status=_CSTR_STATUS[field],
        )
    if b"\0" in raw:
        raise LocalProtocolError(f"{field}: contains NUL", command_status=_CSTR_STATUS[field])
    return raw + b"\0"


def _enc_tlv_value(tag: int, value: TlvValue) -> bytes:
    if isinstance(value, bytes):
        return value
    info = _TLV_INFO.get(tag)
    if isinstance(value, int):
        if info is None or info[1] != _KIND_INT:
            raise LocalProtocolError(
                f"TLV 0x{tag:04X}: int value for a tag that is not an integer TLV",
                command_status=_RINVOPTPARAMVAL,
            )
        try:
            return value.to_bytes(info[2], "big")
        except OverflowError:
            raise LocalProtocolError(
                f"TLV 0x{tag:04X}: {value} does not fit in {info[2]} octet(s)",
                command_status=_RINVOPTPARAMVAL,
            ) from None
    if isinstance(value, str):
        if info is None or info[1] != _KIND_CSTR:
            raise LocalProtocolError(
                f"TLV 0x{tag:04X}: str value for a tag that is not a C-string TLV",
                command_status=_RINVOPTPARAMVAL,
            )
        try:
            raw = value.encode("latin-1")
        except UnicodeEncodeError:
            raise LocalProtocolError(
                f"TLV 0x{tag:04X}: {value!r} is not latin-1", command_status=_RINVOPTPARAMVAL
            ) from None
        if len(raw) >= info[2] or b"\0" in raw:
            raise LocalProtocolError(
                f"TLV 0x{tag:04X}: C-string of {len(raw)} octets (max {info[2] - 1}, no NUL)",
                command_status=_RINVPARLEN,
            )
        return raw + b"\0"
    raise LocalProtocolError(
        f"TLV 0x{tag:04X}: unsupported value type {type(value).__name__}",
        command_status=_RINVOPTPARAMVAL,
    )


# Integer TLVs packed whole, header included: tag -> (struct for tag/length/value, size).
_INT_TLV_STRUCT: dict[int, tuple[struct.Struct, int]] = {
    tag: (struct.Struct(">HH" + {1: "B", 2: "H", 4: "I"}[size]), size)
    for tag, size in TLV_INTEGER_SIZE.items()
}


def _enc_tlvs(tlvs: tuple[Tlv, ...]) -> bytes:
    if not tlvs:
        return b""
    parts: list[bytes] = []
    append = parts.append
    pack_header = _TLV_HEADER.pack
    int_structs = _INT_TLV_STRUCT
    for tlv in tlvs:
        tag = tlv.tag
        value = tlv.value
        if type(value) is int and tag in int_structs:  # fast path: sar_*, message_state...
            packer, size = int_structs[tag]
            if 0 <= value < 1 << (8 * size):
                append(packer.pack(tag, size, value))
                continue
        raw = _enc_tlv_value(tag, value)
        if len(raw) > 0xFFFF:
            raise LocalProtocolError(
                f"TLV 0x{tag:04X}: value of {len(raw)} octets", command_status=_RINVPARLEN
            )
        if not 0 <= tag <= 0xFFFF:
            raise LocalProtocolError(f"TLV tag {tag} out of range", command_status=_RINVOPTPARAMVAL)
        append(pack_header(tag, len(raw)))
        append(raw)
    return b"".join(parts)


def _enc_empty(pdu: Pdu) -> bytes:
    return b""


def _enc_bind(pdu: Pdu) -> bytes:
    assert isinstance(pdu, BindTransceiver)
    return b"".join(
        (
            _enc_cstr(pdu.system_id, 16, "system_id"),
            _enc_cstr(pdu.password, 9, "password"),
            _enc_cstr(pdu.system_type, 13, "system_type"),
            _B3.pack(pdu.interface_version, pdu.addr_ton, pdu.addr_npi),
            _enc_cstr(pdu.address_range, 41, "address_range"),
        )
    )


def _enc_bind_resp(pdu: Pdu) -> bytes:
    assert isinstance(pdu, BindTransceiverResp)
    return _enc_cstr(pdu.system_id, 16, "system_id") + _enc_tlvs(pdu.tlvs)


def _enc_sm(pdu: Pdu) -> bytes:
    assert isinstance(pdu, (SubmitSm, DeliverSm))
    sm = pdu.short_message
    if len(sm) > MAX_SHORT_MESSAGE:
        raise LocalProtocolError(
            f"short_message of {len(sm)} octets (max {MAX_SHORT_MESSAGE}); "
            "use the message_payload TLV or segment it",
            command_status=_RINVMSGLEN,
        )
    # Empty C-strings (service_type, schedule/validity nearly always) skip the call.
    service_type = pdu.service_type
    schedule = pdu.schedule_delivery_time
    validity = pdu.validity_period
    return b"".join(
        (
            b"\0" if service_type == "" else _enc_cstr(service_type, 6, "service_type"),
            _B2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
            _enc_cstr(pdu.source_addr, 21, "source_addr"),
            _B2.pack(pdu.dest_addr_ton, pdu.dest_addr_npi),
            _enc_cstr(pdu.destination_addr, 21, "destination_addr"),
            _B3.pack(pdu.esm_class, pdu.protocol_id, pdu.priority_flag),
            b"\0" if schedule == "" else _enc_cstr(schedule, 17, "schedule_delivery_time"),
            b"\0" if validity == "" else _enc_cstr(validity, 17, "validity_period"),
            _B5.pack(
                pdu.registered_delivery,
                pdu.replace_if_present_flag,
                pdu.data_coding,
                pdu.sm_default_msg_id,
                len(sm),
            ),
            sm,
            _enc_tlvs(pdu.tlvs) if pdu.tlvs else b"",
        )
    )


def _enc_message_id_resp(pdu: Pdu) -> bytes:
    assert isinstance(pdu, (SubmitSmResp, DeliverSmResp))
    mid = pdu.message_id
    if mid == "":
        return b"\0"
    return _enc_cstr(mid, 65, "message_id")


def _enc_data_sm(pdu: Pdu) -> bytes:
    assert isinstance(pdu, DataSm)
    return b"".join(
        (
            _enc_cstr(pdu.service_type, 6, "service_type"),
            _B2.pack(pdu.source_addr_ton, pdu.source_addr_npi),
            _enc_cstr(pdu.source_addr, 21, "source_addr"),
            _B2.pack(pdu.dest_addr_ton, pdu.dest_addr_npi),
            _enc_cstr(pdu.destination_addr, 21, "destination_addr"),
            _B3.pack(pdu.esm_class, pdu.registered_delivery, pdu.data_coding),
            _enc_tlvs(pdu.tlvs),
        )
    )


def _enc_data_sm_resp(pdu: Pdu) -> bytes:
    assert isinstance(pdu, DataSmResp)
    return _enc_cstr(pdu.message_id, 65, "message_id") + _enc_tlvs(pdu.tlvs)


_ENCODERS: dict[type[Pdu], Callable[[Pdu], bytes]] = {
    GenericNack: _enc_empty,
    BindTransceiver: _enc_bind,
    BindTransceiverResp: _enc_bind_resp,
    Unbind: _enc_empty,
    UnbindResp: _enc_empty,
    EnquireLink: _enc_empty,
    EnquireLinkResp: _enc_empty,
    SubmitSm: _enc_sm,
    SubmitSmResp: _enc_message_id_resp,
    DeliverSm: _enc_sm,
    DeliverSmResp: _enc_message_id_resp,
    DataSm: _enc_data_sm,
    DataSmResp: _enc_data_sm_resp,
}


def encode(pdu: Pdu) -> bytes:
    """The full PDU octets, 16-octet header included. Response PDUs that have fields
    always carry their body, whatever their command_status.

    Raises LocalProtocolError if the PDU cannot be represented (a string too long for
    its field or not latin-1, an integer out of range, short_message over 254 octets,
    a TLV value of the wrong type for its tag, a PDU over MAX_PDU_LENGTH, ...)."""
    encoder = _ENCODERS.get(type(pdu))
    if encoder is None:
        raise LocalProtocolError(f"cannot encode {type(pdu).__name__}")
    try:
        body = encoder(pdu)
        length = HEADER_LENGTH + len(body)
        if length > MAX_PDU_LENGTH:
            raise LocalProtocolError(
                f"{type(pdu).__name__} of {length} octets exceeds {MAX_PDU_LENGTH}",
                command_status=_RINVCMDLEN,
            )
        return _HEADER.pack(length, pdu.command_id, pdu.command_status, pdu.sequence_number) + body
    except LocalProtocolError as exc:
        if exc.sequence_number is None:
            exc.sequence_number = pdu.sequence_number
        if exc.command_id is None:
            exc.command_id = pdu.command_id
        raise
    except (struct.error, OverflowError, TypeError, ValueError) as exc:
        raise LocalProtocolError(
            f"{type(pdu).__name__}: {exc}",
            sequence_number=pdu.sequence_number,
            command_id=pdu.command_id,
        ) from exc


# --------------------------------------------------------------------------- decoding

# The hot decoders build PDUs and TLVs through gateway/slots.py (object.__new__ and
# the slots' descriptors, a third of the dataclass __init__'s cost), and the deliver_sm
# / submit_sm decoder is unrolled: see `_make_sm_decoder` for why, with figures.

_new = new_object
_set_tlv_tag, _set_tlv_value = slot_setters(Tlv, ("tag", "value"))


_SM_FIELDS = (
    "sequence_number",
    "command_status",
    "service_type",
    "source_addr_ton",
    "source_addr_npi",
    "source_addr",
    "dest_addr_ton",
    "dest_addr_npi",
    "destination_addr",
    "esm_class",
    "protocol_id",
    "priority_flag",
    "schedule_delivery_time",
    "validity_period",
    "registered_delivery",
    "replace_if_present_flag",
    "data_coding",
    "sm_default_msg_id",
    "short_message",
    "tlvs",
)
_MESSAGE_ID_RESP_FIELDS = ("sequence_number", "command_status", "message_id")


def _dec_cstr(frame: bytes, pos: int, maxlen: int, field: str) -> tuple[str, int]:
    nul = frame.find(0, pos)
    if nul < 0:
        raise _BodyError(_RINVCMDLEN, f"{field}: no NUL terminator before the end of the PDU")
    if nul - pos >= maxlen:
        raise _BodyError(
            _CSTR_STATUS[field], f"{field}: {nul - pos} octets, at most {maxlen - 1} allowed"
        )
    if nul == pos:
        return "", pos + 1
    return frame[pos:nul].decode("latin-1"), nul + 1


def _dec_tlvs(frame: bytes, pos: int, end: int) -> tuple[Tlv, ...]:
    tlvs: list[Tlv] = []
    append = tlvs.append
    new = _new
    set_tag = _set_tlv_tag
    set_value = _set_tlv_value
    unpack_header = _TLV_HEADER.unpack_from
    info_get = _TLV_INFO.get
    while pos < end:
        if end - pos < 4:
            raise _BodyError(
                _RINVOPTPARSTREAM, f"{end - pos} trailing octet(s): truncated TLV header"
            )
        tag, length = unpack_header(frame, pos)
        pos += 4
        vend = pos + length
        if vend > end:
            raise _BodyError(
                _RINVOPTPARSTREAM,
                f"TLV 0x{tag:04X}: length {length} runs {vend - end} octet(s) past the PDU",
            )
        info = info_get(tag)
        value: TlvValue
        if info is None:
            value = frame[pos:vend]
        else:
            known_tag, kind, size = info
            tag = known_tag
            if kind == _KIND_INT and length == size:
                value = frame[pos] if size == 1 else int.from_bytes(frame[pos:vend], "big")
            elif kind == _KIND_CSTR and 0 < length <= size and frame.find(0, pos, vend) == vend - 1:
                value = frame[pos : vend - 1].decode("latin-1")
            else:
                value = frame[pos:vend]
        tlv = new(Tlv)
        set_tag(tlv, tag)
        set_value(tlv, value)
        append(tlv)
        pos = vend
    return tuple(tlvs)


def _no_trailing(frame: bytes, pos: int) -> None:
    if pos != len(frame):
        raise _BodyError(_RINVCMDLEN, f"{len(frame) - pos} octet(s) of trailing data")


def _dec_bind(frame: bytes, status: int, seq: int) -> Pdu:
    system_id, pos = _dec_cstr(frame, 16, 16, "system_id")
    password, pos = _dec_cstr(frame, pos, 9, "password")
    system_type, pos = _dec_cstr(frame, pos, 13, "system_type")
    interface_version, addr_ton, addr_npi = _B3.unpack_from(frame, pos)
    address_range, pos = _dec_cstr(frame, pos + 3, 41, "address_range")
    _no_trailing(frame, pos)
    return BindTransceiver(
        sequence_number=seq,
        command_status=status,
        system_id=system_id,
        password=password,
        system_type=system_type,
        interface_version=interface_version,
        addr_ton=addr_ton,
        addr_npi=addr_npi,
        address_range=address_range,
    )


def _dec_bind_resp(frame: bytes, status: int, seq: int) -> Pdu:
    system_id, pos = _dec_cstr(frame, 16, 16, "system_id")
    return BindTransceiverResp(
        sequence_number=seq,
        command_status=status,
        system_id=system_id,
        tlvs=_dec_tlvs(frame, pos, len(frame)),
    )


def _make_sm_decoder(cls: type[SubmitSm] | type[DeliverSm]) -> Callable[[bytes, int, int], Pdu]:
    # The MO hot path (the intake decodes every deliver_sm), so it is unrolled where the
    # other decoders are generic (`_dec_cstr` per C-string, the dataclass __init__):
    # every field inlined, one NUL search per C-string, the slots filled through
    # gateway/slots.py. Measured on a 27-octet deliver_sm (thread CPU time, best of 9 x
    # 20,000): 7.7-8.3 us here against 13.5-14.2 us for the same body decoded the
    # generic way, the way _dec_data_sm does (`decode` as a whole: 8.6-9.1 us).
    # tests/test_codec.py checks it against `encode` (round trips) and against smpplib.
    (
        set_seq,
        set_status,
        set_service_type,
        set_src_ton,
        set_src_npi,
        set_source_addr,
        set_dst_ton,
        set_dst_npi,
        set_destination_addr,
        set_esm_class,
        set_protocol_id,
        set_priority_flag,
        set_schedule,
        set_validity,
        set_registered_delivery,
        set_replace_if_present,
        set_data_coding,
        set_default_msg_id,
        set_short_message,
        set_tlvs,
    ) = slot_setters(cls, _SM_FIELDS)
    new = _new
    b2 = _B2.unpack_from
    b3 = _B3.unpack_from
    b5 = _B5.unpack_from
    status_for = _CSTR_STATUS

    def too_long(field: str, n: int, maxlen: int) -> _BodyError:
        return _BodyError(status_for[field], f"{field}: {n} octets, at most {maxlen - 1} allowed")

    def no_nul(field: str) -> _BodyError:
        return _BodyError(_RINVCMDLEN, f"{field}: no NUL terminator before the end of the PDU")

    def decode_sm(frame: bytes, status: int, seq: int) -> Pdu:
        pdu = new(cls)
        set_seq(pdu, seq)
        set_status(pdu, status)
        find = frame.find
        # service_type
        nul = find(0, 16)
        if nul == 16:
            set_service_type(pdu, "")
        elif nul < 0:
            raise no_nul("service_type")
        elif nul - 16 >= 6:
            raise too_long("service_type", nul - 16, 6)
        else:
            set_service_type(pdu, frame[16:nul].decode("latin-1"))
        ton, npi = b2(frame, nul + 1)
        set_src_ton(pdu, ton)
        set_src_npi(pdu, npi)
        pos = nul + 3
        # source_addr
        nul = find(0, pos)
        if nul < 0:
            raise no_nul("source_addr")
        if nul - pos >= 21:
            raise too_long("source_addr", nul - pos, 21)
        set_source_addr(pdu, frame[pos:nul].decode("latin-1"))
        ton, npi = b2(frame, nul + 1)
        set_dst_ton(pdu, ton)
        set_dst_npi(pdu, npi)
        pos = nul + 3
        # destination_addr
        nul = find(0, pos)
        if nul < 0:
            raise no_nul("destination_addr")
        if nul - pos >= 21:
            raise too_long("destination_addr", nul - pos, 21)
        set_destination_addr(pdu, frame[pos:nul].decode("latin-1"))
        esm_class, protocol_id, priority_flag = b3(frame, nul + 1)
        set_esm_class(pdu, esm_class)
        set_protocol_id(pdu, protocol_id)
        set_priority_flag(pdu, priority_flag)
        pos = nul + 4
        # schedule_delivery_time
        nul = find(0, pos)
        if nul == pos:
            set_schedule(pdu, "")
        elif nul < 0:
            raise no_nul("schedule_delivery_time")
        elif nul - pos >= 17:
            raise too_long("schedule_delivery_time", nul - pos, 17)
        else:
            set_schedule(pdu, frame[pos:nul].decode("latin-1"))
        pos = nul + 1
        # validity_period
        nul = find(0, pos)
        if nul == pos:
            set_validity(pdu, "")
        elif nul < 0:
            raise no_nul("validity_period")
        elif nul - pos >= 17:
            raise too_long("validity_period", nul - pos, 17)
        else:
            set_validity(pdu, frame[pos:nul].decode("latin-1"))
        registered_delivery, replace_if_present, data_coding, default_msg_id, sm_length = b5(
            frame, nul + 1
        )
        set_registered_delivery(pdu, registered_delivery)
        set_replace_if_present(pdu, replace_if_present)
        set_data_coding(pdu, data_coding)
        set_default_msg_id(pdu, default_msg_id)
        pos = nul + 6
        if sm_length > MAX_SHORT_MESSAGE:
            raise _BodyError(_RINVMSGLEN, f"sm_length {sm_length} exceeds {MAX_SHORT_MESSAGE}")
        end = len(frame)
        sm_end = pos + sm_length
        if sm_end > end:
            raise _BodyError(
                _RINVMSGLEN, f"sm_length {sm_length} runs {sm_end - end} octet(s) past the PDU"
            )
        set_short_message(pdu, frame[pos:sm_end])
        set_tlvs(pdu, _dec_tlvs(frame, sm_end, end) if sm_end < end else ())
        return pdu

    return decode_sm


def _make_message_id_resp_decoder(
    cls: type[SubmitSmResp] | type[DeliverSmResp],
) -> Callable[[bytes, int, int], Pdu]:
    set_seq, set_status, set_message_id = slot_setters(cls, _MESSAGE_ID_RESP_FIELDS)
    new = _new

    def decode_message_id_resp(frame: bytes, status: int, seq: int) -> Pdu:
        if len(frame) == 17 and frame[16] == 0:  # the usual empty message_id
            message_id = ""
        else:
            message_id, pos = _dec_cstr(frame, 16, 65, "message_id")
            _no_trailing(frame, pos)
        pdu = new(cls)
        set_seq(pdu, seq)
        set_status(pdu, status)
        set_message_id(pdu, message_id)
        return pdu

    return decode_message_id_resp


def _dec_data_sm(frame: bytes, status: int, seq: int) -> Pdu:
    service_type, pos = _dec_cstr(frame, 16, 6, "service_type")
    src_ton, src_npi = _B2.unpack_from(frame, pos)
    source_addr, pos = _dec_cstr(frame, pos + 2, 21, "source_addr")
    dst_ton, dst_npi = _B2.unpack_from(frame, pos)
    destination_addr, pos = _dec_cstr(frame, pos + 2, 21, "destination_addr")
    esm_class, registered_delivery, data_coding = _B3.unpack_from(frame, pos)
    return DataSm(
        sequence_number=seq,
        command_status=status,
        service_type=service_type,
        source_addr_ton=src_ton,
        source_addr_npi=src_npi,
        source_addr=source_addr,
        dest_addr_ton=dst_ton,
        dest_addr_npi=dst_npi,
        destination_addr=destination_addr,
        esm_class=esm_class,
        registered_delivery=registered_delivery,
        data_coding=data_coding,
        tlvs=_dec_tlvs(frame, pos + 3, len(frame)),
    )


def _dec_data_sm_resp(frame: bytes, status: int, seq: int) -> Pdu:
    message_id, pos = _dec_cstr(frame, 16, 65, "message_id")
    return DataSmResp(
        sequence_number=seq,
        command_status=status,
        message_id=message_id,
        tlvs=_dec_tlvs(frame, pos, len(frame)),
    )


# command_id -> body decoder; None for PDUs that have no body.
_DECODERS: dict[int, Callable[[bytes, int, int], Pdu] | None] = {
    CommandId.GENERIC_NACK: None,
    CommandId.BIND_TRANSCEIVER: _dec_bind,
    CommandId.BIND_TRANSCEIVER_RESP: _dec_bind_resp,
    CommandId.UNBIND: None,
    CommandId.UNBIND_RESP: None,
    CommandId.ENQUIRE_LINK: None,
    CommandId.ENQUIRE_LINK_RESP: None,
    CommandId.SUBMIT_SM: _make_sm_decoder(SubmitSm),
    CommandId.SUBMIT_SM_RESP: _make_message_id_resp_decoder(SubmitSmResp),
    CommandId.DELIVER_SM: _make_sm_decoder(DeliverSm),
    CommandId.DELIVER_SM_RESP: _make_message_id_resp_decoder(DeliverSmResp),
    CommandId.DATA_SM: _dec_data_sm,
    CommandId.DATA_SM_RESP: _dec_data_sm_resp,
}

# PDUs a 16-octet frame (no body at all) decodes to, with default field values:
# bodyless PDUs, and every response (an SMSC may omit the body of a failed response).
_HEADER_ONLY: dict[int, type[Pdu]] = {
    cid: cls for cid, cls in PDU_CLASSES.items() if _DECODERS[cid] is None or cid & 0x80000000
}

assert set(_DECODERS) == set(PDU_CLASSES) == {cls.command_id for cls in _ENCODERS}


def peek_header(frame: bytes | bytearray | memoryview) -> tuple[int, int, int, int]:
    """(command_length, command_id, command_status, sequence_number) of a frame; what a
    generic_nack needs when `decode` fails. Raises PduDecodeError if under 16 octets."""
    if len(frame) < HEADER_LENGTH:
        raise PduDecodeError(f"{len(frame)} octets is shorter than a PDU header")
    length, command_id, status, seq = _HEADER.unpack_from(frame)
    return length, command_id, status, seq


def decode(frame: bytes | bytearray | memoryview) -> Pdu:
    """Decode one complete frame, header included. Raises PduDecodeError, and nothing
    else, if the frame is not a valid PDU; its `command_status` and `sequence_number`
    are what the generic_nack should carry."""
    if type(frame) is not bytes:
        frame = bytes(frame)
    n = len(frame)
    if n < HEADER_LENGTH:
        raise PduDecodeError(f"{n} octets is shorter than a PDU header")
    length, command_id, status, seq = _HEADER.unpack_from(frame)
    if length != n or n > MAX_PDU_LENGTH:
        raise PduDecodeError(
            f"command_length {length} but the frame has {n} octets",
            sequence_number=seq,
            command_id=command_id,
        )
    try:
        decoder = _DECODERS[command_id]
    except KeyError:
        raise PduDecodeError(
            f"unknown or unsupported command_id 0x{command_id:08X}",
            command_status=_RINVCMDID,
            sequence_number=seq,
            command_id=command_id,
        ) from None
    if n == HEADER_LENGTH:
        cls = _HEADER_ONLY.get(command_id)
        if cls is not None:
            return cls(sequence_number=seq, command_status=status)
    if decoder is None:
        raise PduDecodeError(
            f"{CommandId(command_id).name.lower()} has no body but {n - 16} octet(s) follow",
            sequence_number=seq,
            command_id=command_id,
        )
    try:
        return decoder(frame, status, seq)
    except _BodyError as exc:
        raise PduDecodeError(
            f"{CommandId(command_id).name.lower()}: {exc}",
            command_status=exc.status,
            sequence_number=seq,
            command_id=command_id,
        ) from None
    except (struct.error, IndexError, ValueError) as exc:
        raise PduDecodeError(
            f"{CommandId(command_id).name.lower()}: truncated body ({exc})",
            sequence_number=seq,
            command_id=command_id,
        ) from None


# --------------------------------------------------------------------------- framing


class Decoder:
    """Cuts an SMPP byte stream into frames.

        decoder.receive_data(chunk)
        while (frame := decoder.next_frame()) is not None:
            ...

    `next_frame` raises FrameError as soon as a command_length below 16 or above
    MAX_PDU_LENGTH is seen; the stream is then unrecoverable and every later call
    raises again."""

    __slots__ = ("_buf", "_pos")

    # Compact the buffer once this many consumed octets sit in front of it.
    _COMPACT_AT: Final = 64 * 1024

    def __init__(self) -> None:
        self._buf = bytearray()
        self._pos = 0

    @property
    def buffered(self) -> int:
        """Octets received but not yet returned as frames (a partial PDU at EOF)."""
        return len(self._buf) - self._pos

    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        pos = self._pos
        if pos:
            buf = self._buf
            if pos == len(buf):
                buf.clear()
                self._pos = 0
            elif pos >= self._COMPACT_AT:
                del buf[:pos]
                self._pos = 0
        self._buf += data

    def next_frame(self) -> bytes | None:
        buf = self._buf
        pos = self._pos
        avail = len(buf) - pos
        if avail < 4:
            return None
        (length,) = _U32.unpack_from(buf, pos)
        if length < HEADER_LENGTH or length > MAX_PDU_LENGTH:
            command_id = seq = None
            if avail >= 8:
                (command_id,) = _U32.unpack_from(buf, pos + 4)
            if avail >= HEADER_LENGTH:
                (seq,) = _U32.unpack_from(buf, pos + 12)
            raise FrameError(
                f"command_length {length} outside [{HEADER_LENGTH}, {MAX_PDU_LENGTH}]",
                sequence_number=seq,
                command_id=command_id,
            )
        if avail < length:
            return None
        end = pos + length
        frame = bytes(buf[pos:end])
        self._pos = end
        return frame

    def next_pdu(self) -> tuple[Pdu, bytes] | None:
        """(decode(frame), frame) for the next frame, or None if more data is needed.
        A PduDecodeError leaves the stream usable: the bad frame has been consumed."""
        frame = self.next_frame()
        if frame is None:
            return None
        return decode(frame), frame


__all__ = [
    "HEADER_LENGTH",
    "MAX_PDU_LENGTH",
    "MAX_SHORT_MESSAGE",
    "TLV_CSTRING_MAX",
    "TLV_INTEGER_SIZE",
    "Decoder",
    "FrameError",
    "LocalProtocolError",
    "PduDecodeError",
    "RemoteProtocolError",
    "SmppError",
    "decode",
    "encode",
    "peek_header",
]
