"""Turning an email reply into the text of an SMS (pure functions, no I/O).

`extract_text` picks the text of a parsed message: its ``text/plain`` body, else its
``text/html`` body converted to plain text (tags dropped, entities unescaped, block
elements as line breaks, ``<blockquote>`` contents dropped as quoted history).

`strip_reply` keeps only what the person wrote:

* lines quoted with ``>`` are removed;
* everything from the first of these is cut:

  - an attribution line: ``On <date>, <someone> wrote:`` (also wrapped over two or
    three lines, as Gmail does, and the common German, French, Spanish, Dutch,
    Italian and Portuguese forms), or any line ending in ``wrote:`` that is followed
    by ``>``-quoted lines;
  - ``-----Original Message-----`` / ``---------- Forwarded message ---------`` /
    ``Begin forwarded message:``;
  - an Outlook header block: ``From: ...`` followed within three lines by
    ``Sent: ...`` or ``Date: ...``;
  - a ``________________________________`` separator (10 or more underscores);
  - the signature delimiter ``-- `` (also ``--``, as many clients trim the space);
  - a mobile footer: ``Sent from my iPhone`` (iPad, Android, Galaxy...),
    ``Sent from Mail for Windows``, ``Sent from Yahoo Mail``, ``Get Outlook for ...``;

* if that leaves nothing but the quote is followed by unquoted text (a bottom-posted
  or inline reply), the attribution and the quoted lines are removed instead and the
  rest is kept (still cut at a signature, footer or header block);
* trailing whitespace is removed from every line, leading and trailing blank lines
  are dropped and runs of blank lines become one; other line breaks are kept.
  No-break spaces become spaces and zero-width characters are removed (they would
  force a GSM-7 text into UCS-2).

`MAX_REPLY_CHARS` is the longest stripped reply that is sent as an SMS.

`read_message` parses the raw bytes of a message within limits that keep the work
linear in its size: the header fields that the `email` package parses into structure
(``Content-*``, ``From`` and the automatic-mail markers) are at most `MAX_FIELD_CHARS`
each and `MAX_MIME_FIELDS_CHARS` together (its parameter parser, RFC 2231 included, is
quadratic in a field's length), and a message has at most `MAX_PARTS` MIME parts (and
at most `MAX_DASH_LINES` lines that could start one, counted before parsing);
`html_to_text` refuses HTML that may nest deeper than `MAX_HTML_DEPTH`.
"""

from __future__ import annotations

import email
import email.policy
import re
from email.message import EmailMessage, Message
from typing import Final

from selectolax.lexbor import LexborHTMLParser, LexborNode

__all__ = [
    "MAX_DASH_LINES",
    "MAX_FIELD_CHARS",
    "MAX_HTML_DEPTH",
    "MAX_MIME_FIELDS_CHARS",
    "MAX_PARTS",
    "MAX_REPLY_CHARS",
    "MessageTooComplex",
    "extract_text",
    "html_to_text",
    "read_message",
    "strip_reply",
]

MAX_REPLY_CHARS: Final = 1000
"""Longest reply (characters, after stripping) that becomes an SMS; a longer one is
refused with a clear reason, never truncated (a cut answer can change its meaning).
1000 GSM-7 characters are 7 concatenated parts of 153; in UCS-2 (any character
outside GSM-7, e.g. an emoji) it is 15 parts of 67."""



class MessageTooComplex(ValueError):
    """A message over one of the parsing limits; the text says which, for the sender."""


# --------------------------------------------------------------------------- markers

_QUOTED_RE: Final = re.compile(r"^\s*>")
# Bounded repeats: the line comes from the mail sender, and `.+\s...schrieb.*\s*:$` on a
# 40 KB line backtracks for seconds. Real attributions are well under 400 characters.
_ATTRIBUTION_RE: Final = re.compile(
    r"^(?:On\s.{1,400}\swrote"  # English: On Tue, Jan 2, 2024 at 3:04 PM John <j@x> wrote:
    r"|Am\s.{1,400}\sschrieb.{0,400}"  # German: Am 02.01.2024 um 15:04 schrieb John <j@x>:
    r"|Le\s.{1,400}\sa\s{1,8}écrit"  # French: Le 2 janv. 2024 à 15:04, John <j@x> a écrit :
    r"|El\s.{1,400}\sescribió"  # Spanish: El mar, 2 ene 2024 a las 15:04, John escribió:
    r"|Op\s.{1,400}\sschreef.{0,400}"  # Dutch: Op 2 jan. 2024 om 15:04 schreef John <j@x>:
    r"|Il\s.{1,400}\sha\s{1,8}scritto"  # Italian: Il giorno 2 gen 2024, John ha scritto:
    r"|Em\s.{1,400}\sescreveu"  # Portuguese: Em 2 de jan. de 2024, John escreveu:
    r")\s{0,8}:$"
)
_ATTRIBUTION_START_RE: Final = re.compile(r"^(?:On|Am|Le|El|Op|Il|Em)\s")
_WROTE_RE: Final = re.compile(r"\swrote:$")
_ORIGINAL_RE: Final = re.compile(
    r"^-{2,}\s*(?:Original Message|Forwarded message)\s*-{2,}$|^Begin forwarded message:$",
    re.IGNORECASE,
)
_FROM_RE: Final = re.compile(r"^\*?From:\*?\s")
_SENT_RE: Final = re.compile(r"^\*?(?:Sent|Date):\*?\s")
_SEPARATOR_RE: Final = re.compile(r"^_{10,}$")
_FOOTER_RE: Final = re.compile(
    r"^(?:Sent from my\s"
    r"|Sent from (?:Mail|Outlook|Yahoo Mail)\b"
    r"|Get Outlook for\s)",
    re.IGNORECASE,
)
_INVISIBLE: Final = dict.fromkeys(map(ord, "\u200b\u200c\u200d\u2060\ufeff"))
_INVISIBLE[0xA0] = ord(" ")
_INVISIBLE[0x202F] = ord(" ")


def _attribution_len(lines: list[str], i: int) -> int:
    """How many lines (1-3) the attribution starting at line `i` spans; 0 if none."""
    first = lines[i].strip()
    if not first:
        return 0
    if _ATTRIBUTION_RE.match(first):
        return 1
    if _WROTE_RE.search(first) and _next_is_quote(lines, i + 1):
        return 1  # "John Smith <j@x> wrote:" followed by "> ..."
    if not _ATTRIBUTION_START_RE.match(first):
        return 0
    joined = first
    for n in (2, 3):  # Gmail wraps long attributions: "... <j@x>\nwrote:"
        if i + n - 1 >= len(lines):
            break
        more = lines[i + n - 1].strip()
        if not more:
            break
        joined += " " + more
        if _ATTRIBUTION_RE.match(joined):
            return n
    return 0


def _next_is_quote(lines: list[str], i: int) -> bool:
    while i < len(lines) and not lines[i].strip():
        i += 1
    return i < len(lines) and bool(_QUOTED_RE.match(lines[i]))


def _is_hard_cut(lines: list[str], i: int) -> bool:
    """A marker after which nothing is the answer (signature, footer, header block)."""
    raw = lines[i]
    line = raw.strip()
    if raw.rstrip() == "--":  # "-- " (the standard delimiter) or "--" once trimmed
        return True
    if _ORIGINAL_RE.match(line) or _SEPARATOR_RE.match(line) or _FOOTER_RE.match(line):
        return True
    if _FROM_RE.match(line):
        return any(_SENT_RE.match(nxt.strip()) for nxt in lines[i + 1 : i + 4])
    return False


def _clean(lines: list[str]) -> str:
    out: list[str] = []
    for line in lines:
        line = line.rstrip()
        if line or (out and out[-1]):
            out.append(line)
    while out and not out[-1]:
        out.pop()
    return "\n".join(out)


def strip_reply(text: str) -> str:
    """The answer part of a plain-text email reply (see the module docstring)."""
    text = text.replace("\r\n", "\n").replace("\r", "\n").translate(_INVISIBLE)
    lines = text.split("\n")

    # Top-posting (the usual case): the answer is everything above the first marker.
    top: list[str] = []
    for i in range(len(lines)):
        if _is_hard_cut(lines, i) or _attribution_len(lines, i):
            break
        if not _QUOTED_RE.match(lines[i]):
            top.append(lines[i])
    answer = _clean(top)
    if answer:
        return answer

    # Bottom-posted or inline: drop the attributions and quotes, keep what follows.
    rest: list[str] = []
    i = 0
    while i < len(lines):
        if _is_hard_cut(lines, i):
            break
        span = _attribution_len(lines, i)
        if span:
            i += span
            continue
        if not _QUOTED_RE.match(lines[i]):
            rest.append(lines[i])
        i += 1
    return _clean(rest)


# --------------------------------------------------------------------------- HTML

_BLOCK_TAGS: Final = frozenset(
    {
        "address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt",
        "fieldset", "figcaption", "figure", "footer", "form", "h1", "h2", "h3", "h4",
        "h5", "h6", "header", "hr", "li", "main", "nav", "ol", "p", "pre", "section",
        "table", "tr", "ul",
    }
)  # fmt: skip
_SKIP_TAGS: Final = frozenset({"head", "script", "style", "template", "title", "blockquote"})
_HTML_SPACE_RE: Final = re.compile(r"[ \t\r\n\f]+")
_VOID_TAGS: Final = frozenset({"br", "hr", "img", "meta", "link", "input", "wbr", "col"})
# Elements that an HTML parser closes by itself or never nests (void, or closed by the
# next sibling): left open, they do not make the tree deeper.
_FLAT_TAGS: Final = _VOID_TAGS | frozenset(
    {
        "area", "base", "embed", "source", "track", "param", "keygen", "p", "li", "dt",
        "dd", "tr", "td", "th", "option", "optgroup", "tbody", "thead", "tfoot",
        "colgroup", "caption", "rb", "rt", "rp", "rtc", "html", "head", "body",
    }
)  # fmt: skip
_TAG_RE: Final = re.compile(r"<(/?)([A-Za-z][A-Za-z0-9]*)")

MAX_HTML_DEPTH: Final = 1000
"""Open elements of an HTML body at once (a Gmail thread nests 3 per quoted reply). An
HTML5 parser checks the open elements on every block tag (is a ``<p>`` in scope?), so
its time grows with the square of the nesting: 20,000 unclosed ``<div>`` take
seconds, even in Lexbor."""


def _check_nesting(html: str) -> None:
    """Refuse HTML that could nest deeper than `MAX_HTML_DEPTH`. An upper bound taken
    in one pass over the tags: per tag name, starts not yet matched by an end tag (a
    stray end tag of another name closes nothing, so it counts for nothing)."""
    open_by_name: dict[str, int] = {}
    depth = 0
    for match in _TAG_RE.finditer(html):
        name = match.group(2).lower()
        if name in _FLAT_TAGS:
            continue
        if match.group(1):
            if open_by_name.get(name, 0) > 0:
                open_by_name[name] -= 1
                depth -= 1
            continue
        open_by_name[name] = open_by_name.get(name, 0) + 1
        depth += 1
        if depth > MAX_HTML_DEPTH:
            raise MessageTooComplex(
                f"the HTML nests more than {MAX_HTML_DEPTH} elements deep"
            )


def html_to_text(html: str) -> str:
    """Plain text of an HTML document: tags dropped, entities unescaped, block elements
    and ``<br>`` as line breaks, ``<hr>`` as an underscore separator line, contents of
    ``<head>``, ``<script>``, ``<style>`` and ``<blockquote>`` dropped.

    Lexbor (an HTML5 parser in C) builds the tree in time linear in the input, where
    `html.parser` is quadratic on unclosed tags; the tree is walked without recursion,
    so nesting costs no stack. `MessageTooComplex` when it may nest deeper than
    `MAX_HTML_DEPTH`."""
    _check_nesting(html)
    parts: list[str] = []
    pre = 0
    root = LexborHTMLParser(html).root
    todo: list[tuple[LexborNode, bool]] = [] if root is None else [(root, False)]
    while todo:
        node, closing = todo.pop()
        tag = node.tag or ""
        if closing:
            if tag in _BLOCK_TAGS and tag not in _VOID_TAGS:
                parts.append("\n")
            if tag == "pre":
                pre -= 1
            continue
        if tag == "-text":
            data = node.text_content or ""
            if pre:
                parts.append(data)
                continue
            # HTML whitespace (newlines included) is one space, none at a line start
            text = _HTML_SPACE_RE.sub(" ", data)
            if text.startswith(" ") and (not parts or parts[-1].endswith("\n")):
                text = text[1:]
            if text:
                parts.append(text)
            continue
        if tag in _SKIP_TAGS:
            if tag == "blockquote":  # quoted history: keep a break where it was
                parts.append("\n")
            continue
        if not tag or not tag[0].isalnum():  # comments, doctype
            continue
        if tag == "hr":
            parts.append("\n" + "_" * 32 + "\n")
        elif tag in _BLOCK_TAGS:
            parts.append("\n")
        if tag == "pre":
            pre += 1
        todo.append((node, True))
        children: list[LexborNode] = []
        child = node.child
        while child is not None:
            children.append(child)
            child = child.next
        todo.extend((c, False) for c in reversed(children))
    return _clean("".join(parts).split("\n"))


# --------------------------------------------------------------------------- message


def _part_text(part: Message) -> str:
    if isinstance(part, EmailMessage):
        try:
            content = part.get_content()
        except (LookupError, UnicodeError, ValueError, AssertionError):
            content = None  # unknown charset or broken encoding: decode leniently below
        if isinstance(content, str):
            return content
    payload = part.get_payload(decode=True)
    if not isinstance(payload, bytes):
        return ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return payload.decode(charset, errors="replace")
    except LookupError:
        return payload.decode("utf-8", errors="replace")


def extract_text(msg: EmailMessage) -> str:
    """The text of a message: the ``text/plain`` body if there is one, else the
    ``text/html`` body as plain text, else "" (attachments are never used)."""
    part = msg.get_body(preferencelist=("plain",))
    if part is not None:
        return _part_text(part)
    part = msg.get_body(preferencelist=("html",))
    if part is not None:
        return html_to_text(_part_text(part))
    return ""


# --------------------------------------------------------------------------- limits

MAX_PARTS: Final = 32
"""MIME parts of a message (the message itself, containers and attachments included):
a reply with its quoted history, an HTML alternative and a few inline images fits."""
MAX_FIELD_CHARS: Final = 2048
"""Length of one parsed header field, folded lines included (a long RFC 2231 file name
takes a few hundred). The parser needs 0.2 s for 2 KiB of pathological parameters and
14 s for 20 KiB."""
MAX_MIME_FIELDS_CHARS: Final = 16 * 1024
"""All ``Content-*`` fields of a message together (every part has a few)."""
MAX_DASH_LINES: Final = 256
"""Lines starting with ``--`` (each MIME part starts with one, a boundary): counted
before parsing, as the parser's time grows faster than the number of parts (40,000
empty parts in 400 KB take it 19 s). Signatures and "-----Original Message-----"
lines of a long quoted thread stay far below."""
_DASH_LINE_RE: Final = re.compile(rb"^--", re.MULTILINE)

# The fields that the email package (or this gateway) parses into structure, at the
# start of any line: the top-level header and every MIME part's header. A line of the
# body that looks the same is counted too; that only matters when it is kilobytes long.
# The pattern is linear: every repetition of the group starts at a line break.
_PARSED_FIELD_RE: Final = re.compile(
    rb"^(content-[a-z0-9-]*|from|auto-submitted|x-autoreply|x-autorespond|precedence)"
    rb"[ \t]*:[^\r\n]*(?:\r?\n[ \t][^\r\n]*)*",
    re.IGNORECASE | re.MULTILINE,
)


def _check_fields(raw: bytes) -> None:
    mime_total = 0
    for match in _PARSED_FIELD_RE.finditer(raw):
        size = match.end() - match.start()
        name = match.group(1).decode("ascii")
        if size > MAX_FIELD_CHARS:
            raise MessageTooComplex(
                f"header field {name} is {size} characters long; at most {MAX_FIELD_CHARS}"
            )
        if name.lower().startswith("content-"):
            mime_total += size
            if mime_total > MAX_MIME_FIELDS_CHARS:
                raise MessageTooComplex(
                    f"the Content-* header fields are over {MAX_MIME_FIELDS_CHARS}"
                    " characters together"
                )


def _check_dash_lines(raw: bytes) -> None:
    for count, _match in enumerate(_DASH_LINE_RE.finditer(raw), 1):
        if count > MAX_DASH_LINES:
            raise MessageTooComplex(
                f"more than {MAX_DASH_LINES} lines start with '--' (MIME boundaries)"
            )


def _check_parts(msg: Message) -> None:
    count = 0
    todo = [msg]
    while todo:  # no recursion: nesting depth costs no stack
        part = todo.pop()
        count += 1
        if count > MAX_PARTS:
            raise MessageTooComplex(f"more than {MAX_PARTS} MIME parts")
        if part.is_multipart():  # get_payload() of a leaf would parse its header
            payload = part.get_payload()
            if isinstance(payload, list):
                todo.extend(p for p in payload if isinstance(p, Message))


def read_message(raw: bytes) -> EmailMessage:
    """Parse a message (``email.policy.default``) within the limits of this module;
    `MessageTooComplex` when it is over one of them. Runs in time linear in ``raw``."""
    _check_fields(raw)
    _check_dash_lines(raw)
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert isinstance(msg, EmailMessage)  # what policy.default builds
    _check_parts(msg)
    return msg
