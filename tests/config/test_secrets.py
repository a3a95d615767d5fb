"""Secrets never print: the Secret type, redaction, and the logging filter on real log output."""

from __future__ import annotations

import json
import logging
import pickle
from collections.abc import Iterator

import pytest
from pydantic import SecretStr

from promotel.config.secrets import (
    MASK,
    Secret,
    SecretRedactingFilter,
    redact,
    redact_all,
    register_secret,
    reveal,
)
from promotel.logs import setup_logging


def test_secret_prints_masked_in_every_form() -> None:
    s = Secret("hunter2-very-secret")
    assert str(s) == MASK
    assert repr(s) == "Secret('***')"
    assert f"{s}" == MASK and f"{s:>5}" == "  ***"
    assert "%s" % s == MASK  # noqa: UP031 (logging formats with %)
    assert f"{s}" == MASK
    assert repr([s]) == "[Secret('***')]"
    assert reveal(s) == "hunter2-very-secret"
    assert s == "hunter2-very-secret"                   # still usable as the string it is
    assert s.encode() == b"hunter2-very-secret"
    assert isinstance(s, str)


def test_reveal_accepts_the_other_shapes() -> None:
    assert reveal(SecretStr("pydantic-secret")) == "pydantic-secret"
    assert reveal("plain") == "plain"
    assert reveal(None) == ""
    with pytest.raises(TypeError):
        reveal(42)


def test_secret_survives_pickling() -> None:
    s = pickle.loads(pickle.dumps(Secret("pickled-secret")))
    assert isinstance(s, Secret) and reveal(s) == "pickled-secret" and str(s) == MASK


def test_redact_replaces_every_occurrence_longest_first() -> None:
    text = "key=abc123 again abc123 and abc123XYZ"
    assert redact(text, ["abc123", "abc123XYZ"]) == "key=*** again *** and ***"
    assert redact(text, []) == text
    assert redact("a SecretStr value s3cr3t", [SecretStr("s3cr3t")]) == "a SecretStr value ***"


def test_registry_masks_secrets_created_anywhere() -> None:
    Secret("registered-by-construction")
    register_secret("registered-explicitly")
    register_secret("ab")                               # too short to mask usefully: ignored
    out = redact_all("x registered-by-construction y registered-explicitly z ab")
    assert out == "x *** y *** z ab"


@pytest.fixture(autouse=True)
def _restore_logging() -> Iterator[None]:
    root = logging.getLogger("promotel")
    saved = (list(root.handlers), root.level, root.propagate)
    yield
    root.handlers[:], root.level, root.propagate = saved


def _setup(capsys: pytest.CaptureFixture[str], fmt: str) -> logging.Logger:
    setup_logging(fmt, "info")          # binds the handler to the (captured) stderr of this test
    return logging.getLogger("promotel.test")


@pytest.mark.parametrize("fmt", ["text", "json"])
def test_logging_filter_masks_messages_fields_and_exceptions(capsys: pytest.CaptureFixture[str], fmt: str) -> None:
    key = Secret("log-secret-value-42")
    log = _setup(capsys, fmt)
    leaked = "prefix-" + reveal(key)    # a bug that concatenated the plain value into a message
    log.warning("Scrape failed with header %s and %r.", leaked, key, extra={"fields": {"auth": reveal(key)}})
    try:
        raise RuntimeError(f"server echoed {reveal(key)}")
    except RuntimeError:
        log.exception("Export failed.")
    err = capsys.readouterr().err
    assert "log-secret-value-42" not in err
    assert "prefix-***" in err
    assert "server echoed ***" in err
    if fmt == "json":
        first = json.loads(err.splitlines()[0])
        assert first["auth"] == MASK
        assert first["message"] == "Scrape failed with header prefix-*** and Secret('***')."


def test_filter_keeps_records_without_secrets_intact() -> None:
    record = logging.LogRecord("promotel", logging.INFO, __file__, 1, "Scraped %d samples.", (12,), None)
    assert SecretRedactingFilter().filter(record)
    assert record.getMessage() == "Scraped 12 samples."
