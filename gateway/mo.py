"""Classify an inbound deliver_sm / data_sm: a delivery receipt, one part of a long
MO, or a whole MO. Pure: no IO, no clock."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import NamedTuple

from gateway.smpp.codec import PduDecodeError, decode
from gateway.smpp.pdu import (
    ESM_DELIVERY_RECEIPT,
    ESM_INTERMEDIATE_NOTIFICATION,
    ESM_MESSAGE_TYPE_MASK,
    ESM_UDHI,
    DataSm,
    DeliverSm,
    MessageState,
    TlvTag,
)
from gateway.smpp.text import Concat, split_udh

_RECEIPT_TYPES = frozenset({ESM_DELIVERY_RECEIPT, ESM_INTERMEDIATE_NOTIFICATION})
# The receipt text comes from the SMSC: every quantifier is bounded and possessive (no
# backtracking into a field), and only the first RECEIPT_SCAN octets are searched, so the
# work per receipt is bounded whatever the payload (`id:` + 32,000 `A` took 3.9 s with
# `\S+ .*?`). SMPP 3.4 Appendix B: `id:` (up to 65 octets, the message_id limit) `sub:`
# `dlvrd:` `submit date:` `done date:` `stat:` (7) `err:` (3) `text:` (20), ~150 octets.
RECEIPT_SCAN = 512
_RECEIPT_TEXT = re.compile(
    rb"id:\s{0,8}+(\S{1,65}+)"
    rb".{0,256}?stat:\s{0,8}+(\w{1,16}+)"
    rb"(?:.{0,128}?err:\s{0,8}+(\w{1,16}+))?",
    re.S | re.I,
)

# Receipt states (SMPP 3.4 Appendix B text, and message_state TLV values) -> MT status.
TEXT_STATES = {
    "DELIVRD": "delivered",
    "ACCEPTD": "submitted",
    "ENROUTE": "submitted",
    "EXPIRED": "failed",
    "DELETED": "failed",
    "UNDELIV": "failed",
    "REJECTD": "failed",
    "UNKNOWN": "failed",
}
_TLV_STATES = {
    MessageState.ENROUTE: "ENROUTE",
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}


@dataclass(slots=True)
class Receipt:
    smsc_message_id: str
    state: str  # DELIVRD, UNDELIV, ...
    error: str | None

    @property
    def mt_status(self) -> str:
        return TEXT_STATES.get(self.state.upper(), "submitted")


class ConcatKey(NamedTuple):
    """Which long MO a part belongs to. Fields, never a joined string: an address may
    hold any character (a `|` in a source address once moved the part of an incomplete
    message to another number)."""

    smsc: str
    source: str
    destination: str
    scheme: str  # "8" / "16" (UDH reference bits) or "sar"
    ref: int
    total: int

    def stored(self) -> str:
        """The `mo_parts.concat_key` column: a digest of the fields, the same length for
        any address (the column is 128 characters), unambiguous because the fields are
        JSON-encoded before hashing. After a restart the key itself is rebuilt from each
        part's raw PDU (`key_of_stored_part`), never parsed back from this."""
        fields = json.dumps(self, ensure_ascii=False, separators=(",", ":"))
        return hashlib.blake2b(fields.encode(), digest_size=16).hexdigest()


@dataclass(slots=True)
class Part:
    """One segment of a concatenated MO (UDH or SAR)."""

    concat_key: ConcatKey
    ref: int
    total: int
    seq: int
    body: bytes


def is_receipt(pdu: DeliverSm | DataSm) -> bool:
    return (pdu.esm_class & ESM_MESSAGE_TYPE_MASK) in _RECEIPT_TYPES


def parse_receipt(pdu: DeliverSm | DataSm) -> Receipt | None:
    """TLVs receipted_message_id / message_state first, the `id:... stat:...` text as a
    fallback. None when neither gives a message id."""
    msg_id = pdu.tlv(TlvTag.RECEIPTED_MESSAGE_ID)
    state = pdu.tlv(TlvTag.MESSAGE_STATE)
    match = _RECEIPT_TEXT.search(payload(pdu), 0, RECEIPT_SCAN)
    err = match.group(3).decode("latin-1") if match and match.group(3) else None
    if isinstance(msg_id, bytes):
        msg_id = msg_id.rstrip(b"\0").decode("latin-1")
    if isinstance(msg_id, str) and msg_id:
        if isinstance(state, int) and state in _TLV_STATES:
            return Receipt(msg_id, _TLV_STATES[MessageState(state)], err)
        if match:
            return Receipt(msg_id, match.group(2).decode("latin-1").upper(), err)
        return Receipt(msg_id, "UNKNOWN", err)
    if match:
        return Receipt(
            match.group(1).decode("latin-1"), match.group(2).decode("latin-1").upper(), err
        )
    return None


def payload(pdu: DeliverSm | DataSm) -> bytes:
    """message_payload when present (data_sm always; deliver_sm sometimes), else
    short_message."""
    if pdu.tlvs:
        value = pdu.tlv(TlvTag.MESSAGE_PAYLOAD)
        if isinstance(value, bytes) and value:
            return value
    return pdu.short_message if isinstance(pdu, DeliverSm) else b""


def split_part(pdu: DeliverSm | DataSm, smsc: str) -> tuple[Part | None, bytes]:
    """(Part, body) for a segment of a long MO; (None, body) for a whole one."""
    body = payload(pdu)
    concat: Concat | None = None
    if pdu.esm_class & ESM_UDHI:
        concat, body = split_udh(body)
    if concat is None and pdu.tlvs:
        ref = pdu.tlv(TlvTag.SAR_MSG_REF_NUM)
        total = pdu.tlv(TlvTag.SAR_TOTAL_SEGMENTS)
        seq = pdu.tlv(TlvTag.SAR_SEGMENT_SEQNUM)
        if (
            isinstance(ref, int) and isinstance(total, int) and isinstance(seq, int)
            and 1 <= seq <= total
        ):
            key = ConcatKey(smsc, pdu.source_addr, pdu.destination_addr, "sar", ref, total)
            return Part(key, ref, total, seq, body), body
    if concat is None or concat.total < 2:
        return None, body
    key = ConcatKey(smsc, pdu.source_addr, pdu.destination_addr, str(concat.ref_bits),
                    concat.ref, concat.total)
    return Part(key, concat.ref, concat.total, concat.seq, body), body


def key_of_stored_part(smsc: str, stored: str, raw_pdu: bytes, total: int) -> ConcatKey:
    """The key of a part read back from `mo_parts` (start-up): rebuilt from its raw PDU,
    as when it arrived. Rows written before keys were digests hold the joined string
    `smsc|source|destination|scheme|ref|total`; their raw PDU gives the right key too,
    and the string is only split (best effort) should the PDU not decode."""
    try:
        pdu = decode(raw_pdu)
        if isinstance(pdu, DeliverSm | DataSm):
            part, _ = split_part(pdu, smsc)
            if part is not None:
                return part.concat_key
    except PduDecodeError:
        pass
    head, sep, tail = stored.partition("|")
    fields = tail.rsplit("|", 4) if sep and head == smsc else []
    if len(fields) == 5 and fields[3].isdigit() and fields[4].isdigit():
        return ConcatKey(smsc, fields[0], fields[1], fields[2], int(fields[3]), int(fields[4]))
    # Unreadable: still a group of its own (the stored key), delivered as incomplete.
    return ConcatKey(smsc, "", "", stored, 0, total)


def dedup_key(smsc: str, pdu: DeliverSm | DataSm) -> str:
    """Identity of a PDU for redelivery detection: bind, addresses, payload (with its UDH)
    and the SAR reference. The sequence number is deliberately left out: a redelivery
    gets a new one. Not the identity of a message: a person who sends the same text
    twice sends two (only a suspect key folds a copy, see gateway/redelivery.py)."""
    head = (f"{smsc}\0{pdu.source_addr}\0{pdu.destination_addr}\0{pdu.esm_class}\0"
            f"{pdu.data_coding}\0").encode()
    if isinstance(pdu, DeliverSm):
        head += pdu.short_message
    h = hashlib.blake2b(head, digest_size=16)  # one call: the same digest as updates
    for tlv in pdu.tlvs:
        if tlv.tag in _DEDUP_TLVS:
            h.update(b"\0%d=" % tlv.tag)
            v = tlv.value
            h.update(v if isinstance(v, bytes) else str(v).encode())
    return h.hexdigest()


_DEDUP_TLVS = frozenset({
    TlvTag.MESSAGE_PAYLOAD, TlvTag.SAR_MSG_REF_NUM, TlvTag.SAR_TOTAL_SEGMENTS,
    TlvTag.SAR_SEGMENT_SEQNUM,
})
