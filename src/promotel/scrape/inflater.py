"""The body decoder of a scrape: ``gzip`` (every member) and ``deflate``, inflated chunk by chunk under a cap.

``Scraper`` feeds it the raw body as it streams in (``feed``), then calls ``finish`` when the body ends. The
cap is on the decompressed total, checked as it inflates, so no compressed body (a gzip bomb, however many
members it is spread over) grows past ``max_body_bytes`` in memory. A body that cannot be decoded raises
``BodyError`` with the ``ScrapeError`` kind the scraper reports it as (``format``, ``protocol``, or
``too_large`` for the cap, worded by the scraper).
"""

from __future__ import annotations

import zlib

__all__ = ["BodyError", "Inflater"]


class BodyError(Exception):
    """A compressed body that cannot be decoded: ``kind`` is the ScrapeError kind, the text its message."""

    def __init__(self, message: str, kind: str) -> None:
        super().__init__(message)
        self.kind = kind


_GZIP_MAGIC = b"\x1f\x8b\x08"      # ID1, ID2 and CM = 8 (deflate), what every gzip member starts with


class Inflater:
    """Decompresses a ``gzip`` or ``deflate`` body chunk by chunk, never past ``cap`` bytes in total.

    gzip (RFC 1952, section 2.2): a gzip file is a series of members, each a header, deflate data and a
    CRC-32/length trailer; ``cat a.gz b.gz`` is a valid gzip file whose content is both. Every member is
    decoded, as ``gzip -d`` and Go's ``gzip.Reader`` (multistream by default, the reader Prometheus scrapes
    with) do, and the cap applies to the total, so a bomb spread over many members stops at the cap too.
    After a member, the only thing allowed is another member or the end of the body: like Go's reader
    (which fails with "gzip: invalid header", or "unexpected EOF" for fewer than the 10 bytes of a header),
    anything else is an error naming what was found, not silently ignored. GNU gzip warns about such
    "trailing garbage" and ignores it; Prometheus fails the scrape, and so does promotel.

    deflate (RFC 9110: the zlib format of RFC 1950) has a single stream; bytes after its end are an error
    as well. zlib checks each gzip member's CRC-32 and length, and the deflate stream's Adler-32.
    """

    def __init__(self, encoding: str, cap: int, where: str) -> None:
        self._gzip = encoding != "deflate"
        self._wbits = 16 + zlib.MAX_WBITS if self._gzip else zlib.MAX_WBITS
        self._encoding = encoding
        self._cap = cap
        self._where = where
        self._size = 0                      # decompressed bytes so far, all members
        self._member = 1                    # the member being decoded (gzip), counted from 1
        self._head = b""                    # the first bytes of the current member after the first
        self._decoder = zlib.decompressobj(self._wbits)

    def feed(self, data: bytes) -> list[bytes]:
        out: list[bytes] = []
        while data:
            if self._decoder.eof:           # the member (or zlib stream) is complete and more data follows
                if not self._gzip:
                    raise BodyError(f"the deflate body from {self._where} goes on after the end of its zlib "
                                     f"stream (starting {data[:16]!r}); fix the target's compression", "format")
                self._member += 1
                self._head = b""
                self._decoder = zlib.decompressobj(self._wbits)
            if self._member > 1 and len(self._head) < 16:
                self._head += data[:16 - len(self._head)]
            try:
                # At most up to the cap (+1 byte to detect overflow): a bomb never inflates past it in memory.
                chunk = self._decoder.decompress(data, self._cap - self._size + 1)
            except zlib.error as exc:
                raise self._not_a_member() or BodyError(
                    f"the body from {self._where} is not valid {self._encoding} data ({exc})", "format") from None
            self._size += len(chunk)
            if chunk:
                out.append(chunk)
            if self._size > self._cap:
                raise BodyError("", "too_large")
            data = self._decoder.unused_data if self._decoder.eof else self._decoder.unconsumed_tail
        return out

    def finish(self) -> list[bytes]:
        """What is left once the body has ended; raises when it ended inside a member."""
        if self._decoder.eof:
            return []
        tail = self._decoder.flush()
        self._size += len(tail)
        if self._size > self._cap:
            raise BodyError("", "too_large")
        if not self._decoder.eof:
            trailing = self._not_a_member()
            if trailing is not None:
                raise trailing
            member = f" in gzip member {self._member}" if self._member > 1 else ""
            raise BodyError(f"the compressed body from {self._where} ended early{member} (truncated "
                             f"{'gzip' if self._gzip else 'deflate'} stream)", "protocol")
        return [tail] if tail else []

    def _not_a_member(self) -> BodyError | None:
        """The error for bytes after a complete gzip member that do not start another one, else None."""
        head = self._head
        if self._member == 1 or _GZIP_MAGIC.startswith(head[:3]):    # the start of a member (maybe cut short)
            return None
        return BodyError(f"the gzip body from {self._where} goes on after its gzip member {self._member - 1} "
                          f"with data that is not a gzip member (starting {head!r}); "
                          "Prometheus refuses such a body as well (Go's gzip reader): fix the target's "
                          "compression", "format")
