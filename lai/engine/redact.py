"""Keeping secrets out of everything lai shows or keeps.

An upstream that refuses a key often quotes it ("Incorrect API key provided: Bearer
sk-..."); lai relays upstream messages to clients, stores them with the request, shows
them in ``/v1/providers`` and logs them. A ``Redactor`` is applied at each of those
boundaries: it replaces every configured secret (providers' ``auth_secret`` as resolved,
a password in a provider's ``endpoint`` or in ``server.database_url``) and anything
shaped like a credential (a bearer token, an ``sk-...`` key, a ``lai_...`` key, an
``api-key:`` value) with ``[redacted]``.

``install_log_redaction`` puts the same redaction on the root logger's handlers, so a
log line cannot carry what a message would not. A config reload ``add``s the new
secrets to the engine's redactor (the old ones stay: requests in flight still use them),
and the log filter of ``lai proxy`` is that same redactor.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from urllib.parse import urlsplit

from lai.config.models import ProviderConfig, Settings

MARK = "[redacted]"
MIN_SECRET_LENGTH = 6
"""Configured secrets shorter than this are not searched for: they would match ordinary
words in messages. (Such a secret is not worth keeping out of sight anyway.)"""

_SHAPES = re.compile(
    r"(?P<bearer>\bbearer\s+)[^\s\"',;()[\]{}]{6,}(?<!\.)"
    r"|(?P<header>\b(?:x-)?api[-_]?key[\"']?\s*[:=]\s*[\"']?)[^\s\"',;()[\]{}]{6,}(?<!\.)"
    r"|\bsk-[A-Za-z0-9][A-Za-z0-9_*.-]{5,}(?<![.-])"
    r"|\blai_[0-9A-Za-z]{8,}",
    re.IGNORECASE,
)
"""Credential shapes; a full stop after one is kept. ``lai_`` needs 8+ characters after
it so that the 4-character key prefixes lai itself shows (``lai_5f4d``) stay readable."""


_SHAPE_WORDS = ("bearer", "api", "sk-", "lai_")
"""A text of ASCII characters can match ``_SHAPES`` only if, lower-cased, it contains
one of these: most log lines (every access line) skip the regular expression. Other
text always goes through it (case-insensitive matching folds some non-ASCII letters,
such as the Kelvin sign, to ASCII ones)."""


def _shape(match: re.Match[str]) -> str:
    return (match.group("bearer") or match.group("header") or "") + MARK


class Redactor:
    """Replaces configured secrets and credential-shaped strings with ``[redacted]``."""

    __slots__ = ("_secrets",)

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._secrets: tuple[str, ...] = ()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        """Redact these too (a reloaded config's), besides every secret known before."""
        found = set(self._secrets) | {s for s in secrets if len(s) >= MIN_SECRET_LENGTH}
        # Longest first, so a secret that contains another is replaced whole. One tuple
        # swapped in: a reader on another thread (a log handler) sees the old or the new.
        self._secrets = tuple(sorted(found, key=len, reverse=True))

    @classmethod
    def for_providers(cls, providers: Iterable[ProviderConfig]) -> Redactor:
        """A redactor for these providers' secrets: each ``auth_secret`` (as resolved)
        and the password of an endpoint URL that carries one."""
        return cls(_provider_secrets(providers))

    @classmethod
    def for_settings(cls, settings: Settings) -> Redactor:
        """A redactor for ``secrets_of(settings)``."""
        return cls(secrets_of(settings))

    def __call__(self, text: str) -> str:
        """``text`` with every configured secret and credential shape replaced."""
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MARK)
        if text.isascii():
            lower = text.lower()
            if not any(word in lower for word in _SHAPE_WORDS):
                return text
        return _SHAPES.sub(_shape, text)


def secrets_of(settings: Settings) -> list[str]:
    """Every secret ``settings`` holds: the providers' and the database password."""
    secrets = _provider_secrets(settings.providers)
    password = _url_password(settings.server.database_url)
    if password:
        secrets.append(password)
    return secrets


def _provider_secrets(providers: Iterable[ProviderConfig]) -> list[str]:
    out = []
    for p in providers:
        if p.auth_secret:
            out.append(p.auth_secret)
        password = _url_password(p.endpoint)
        if password:
            out.append(password)
    return out


def _url_password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's message and traceback text."""

    def __init__(self, redact: Redactor) -> None:
        super().__init__("lai.redact")
        self.redact = redact

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself
            return True
        clean = self.redact(message)
        if clean != message:
            record.msg, record.args = clean, ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


def install_log_redaction(redact: Redactor, logger: logging.Logger | None = None) -> None:
    """Redact every record that ``logger``'s handlers (default: the root logger's) write.

    Call after the handlers exist (after ``logging.basicConfig``); installing again
    replaces the previous filter.
    """
    target = logger or logging.getLogger()
    for handler in target.handlers:
        for old in [f for f in handler.filters if isinstance(f, RedactingFilter)]:
            handler.removeFilter(old)
        handler.addFilter(RedactingFilter(redact))
