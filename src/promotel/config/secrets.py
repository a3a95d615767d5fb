"""Secrets: a string that does not print itself, and redaction of every known secret from text.

``Secret`` is a ``str`` subclass so code that needs the value (an HMAC key, an auth header) can use
it where a ``str`` is expected; ``str()``, ``repr()``, ``format()`` and ``%s`` all give ``'***'``.
Take the plain value only with ``reveal(secret)``, at the last moment (building a header), and never
put the result in a message.

Every ``Secret`` registers its value in a process-wide registry. ``redact_all(text)`` replaces any
registered value in ``text``; the logging filter ``SecretRedactingFilter`` (installed by
``promotel.logs.setup_logging``) and ``/status`` run their output through it, so a secret that slipped
into a message by concatenation is still masked.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Self

__all__ = [
    "MASK",
    "Secret",
    "SecretRedactingFilter",
    "redact",
    "redact_all",
    "register_secret",
    "reveal",
]

MASK = "***"

# Values shorter than this are not registered: masking every "a" or "1" in every log line would
# make logs unreadable and protects nothing (such a secret is guessable anyway).
_MIN_REGISTERED_LENGTH = 4

_lock = threading.Lock()
_registry: frozenset[str] = frozenset()
# Longest first, so a secret that contains another one is masked whole.
_ordered: tuple[str, ...] = ()


class Secret(str):
    """A string whose printed forms are ``'***'``. Use ``reveal()`` for the value."""

    __slots__ = ()

    def __new__(cls, value: str) -> Self:
        self = super().__new__(cls, value)
        register_secret(str.__str__(self))
        return self

    def __str__(self) -> str:
        return MASK

    def __repr__(self) -> str:
        return f"Secret({MASK!r})"

    def __format__(self, format_spec: str) -> str:
        return format(MASK, format_spec)

    def __reduce__(self) -> tuple[type[Secret], tuple[str]]:
        # Pickling (multiprocessing) keeps the value; the registry is rebuilt in the other process.
        return (Secret, (str.__str__(self),))


def reveal(secret: object) -> str:
    """The plain value of a ``Secret``, a pydantic ``SecretStr``, a ``str`` (as is) or ``None`` ("")."""
    if secret is None:
        return ""
    if isinstance(secret, str):
        return str.__str__(secret)
    # Duck-typed: pydantic's SecretStr and any other secret type with the same accessor.
    getter = getattr(secret, "get_secret_value", None)
    if callable(getter):
        return str(getter())
    raise TypeError(f"cannot reveal a value of type {type(secret).__name__}; expected a Secret or a str")


def register_secret(value: str | None) -> None:
    """Remember ``value`` so ``redact_all`` masks it everywhere (no-op for empty or very short values)."""
    global _registry, _ordered
    if value is None:
        return
    plain = reveal(value)
    if len(plain) < _MIN_REGISTERED_LENGTH or plain in _registry:
        return
    with _lock:
        registry = _registry | {plain}
        _ordered = tuple(sorted(registry, key=len, reverse=True))
        _registry = registry


def redact(text: str, secrets: Iterable[object]) -> str:
    """``text`` with every occurrence of each of ``secrets`` (str, Secret or SecretStr) replaced by ``***``."""
    values = sorted({reveal(s) for s in secrets if s is not None}, key=len, reverse=True)
    for value in values:
        if value:
            text = text.replace(value, MASK)
    return text


def redact_all(text: str) -> str:
    """``text`` with every registered secret replaced by ``***``."""
    for value in _ordered:   # a snapshot: the tuple is replaced, never mutated
        if value in text:
            text = text.replace(value, MASK)
    return text


class SecretRedactingFilter(logging.Filter):
    """Masks registered secrets in a record's message, arguments, extra fields and exception text.

    The message is rendered once here (``getMessage``) and the record's ``args`` cleared, so the
    formatter sees the redacted text whatever it does next.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if not _ordered:
            return True
        try:
            message = record.getMessage()
        except (TypeError, ValueError):   # a broken format string: keep the raw message
            message = str(record.msg)
        record.msg = redact_all(message)
        record.args = None
        fields = getattr(record, "fields", None)    # only records logged with extra={"fields": …} have it
        if isinstance(fields, dict):
            record.fields = {k: redact_all(v) if isinstance(v, str) else v for k, v in fields.items()}
        if record.exc_info and record.exc_info[1] is not None:
            exc = record.exc_info[1]
            text = str(exc)
            clean = redact_all(text)
            if clean != text:
                # Formatters print str(exc) and the traceback: replace the exception by a masked copy.
                masked = RuntimeError(clean)
                record.exc_info = (RuntimeError, masked, None)
                record.exc_text = None
        return True
