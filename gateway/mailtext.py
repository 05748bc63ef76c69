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
"""

from __future__ import annotations

import re
from email.message import EmailMessage, Message
from html.parser import HTMLParser
from typing import Final

__all__ = ["MAX_REPLY_CHARS", "extract_text", "html_to_text", "strip_reply"]

MAX_REPLY_CHARS: Final = 1000
"""Longest reply (characters, after stripping) that becomes an SMS; a longer one is
refused with a clear reason, never truncated (a cut answer can change its meaning).
1000 GSM-7 characters are 7 concatenated parts of 153; in UCS-2 (any character
outside GSM-7, e.g. an emoji) it is 15 parts of 67."""

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


class _TextExtractor(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)  # entities arrive unescaped in handle_data
        self.parts: list[str] = []
        self._skip: list[str] = []  # open tags whose content is dropped
        self._pre = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            if tag == "blockquote":  # quoted history: keep a break where it was
                self.parts.append("\n")
            self._skip.append(tag)
            return
        if self._skip:
            return
        if tag == "hr":
            self.parts.append("\n" + "_" * 32 + "\n")
        elif tag in _BLOCK_TAGS:
            self.parts.append("\n")
        if tag == "pre":
            self._pre += 1

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIP_TAGS:
            return  # <blockquote/> etc.: nothing to skip
        self.handle_starttag(tag, attrs)

    def handle_endtag(self, tag: str) -> None:
        if self._skip:
            if tag == self._skip[-1]:
                self._skip.pop()
            elif tag in self._skip:  # unbalanced markup: close up to it
                while self._skip and self._skip.pop() != tag:
                    pass
            return
        if tag in _BLOCK_TAGS and tag not in _VOID_TAGS:
            self.parts.append("\n")
        if tag == "pre" and self._pre:
            self._pre -= 1

    def handle_data(self, data: str) -> None:
        if self._skip:
            return
        if self._pre:
            self.parts.append(data)
        else:  # HTML whitespace (newlines included) is one space, none at a line start
            text = _HTML_SPACE_RE.sub(" ", data)
            if text.startswith(" ") and (not self.parts or self.parts[-1].endswith("\n")):
                text = text[1:]
            if text:
                self.parts.append(text)


def html_to_text(html: str) -> str:
    """Plain text of an HTML document: tags dropped, entities unescaped, block elements
    and ``<br>`` as line breaks, ``<hr>`` as an underscore separator line, contents of
    ``<head>``, ``<script>``, ``<style>`` and ``<blockquote>`` dropped."""
    parser = _TextExtractor()
    parser.feed(html)
    parser.close()
    return _clean("".join(parser.parts).split("\n"))


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
