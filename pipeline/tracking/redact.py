"""Passwords hidden in any text: the one redaction that everything printed, tagged, logged as a
param, written to an artifact or put in an error message goes through.

It covers every form a password takes in a URL: userinfo (``user:pw@host``, also with an
unencoded ``@`` or percent-encoding in the password), query or DSN parameters
(``?password=``, ``sslpassword=``, ``token=``, ``api_key=`` ...), and, for messages that
echo a password on its own (a driver's error), every password that this process has seen
in a store URL (``remember``).
"""
from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import unquote

MASK = "***"
_STOP = r"\s'\"<>`"  # a URL ends at whitespace or a quote
_PW_STOP = r"\s\"<>`"  # ... but a password may hold a single quote, which URLs allow unencoded
# scheme://user:PASSWORD@host -- the password runs to the last '@' of the URL, so that an
# unencoded '@' in it is hidden too (over-hiding a path is harmless, leaking is not)
_USERINFO = re.compile(rf"(?P<head>\b[A-Za-z][A-Za-z0-9+.\-]*://[^{_STOP}:/@]*):(?P<pw>[^{_PW_STOP}]*)"
                       rf"@(?=[^{_STOP}@/]*(?:[/?#{_STOP}]|$))")
_SECRET_WORDS = r"pass(?:word|wd)|pwd|secret|token|api[_-]?key|access[_-]?key|credentials?|authorization"
_PARAM = re.compile(rf"(?i)(?P<head>(?:^|[?&;,\s(])[\w.\-]*(?:{_SECRET_WORDS})[\w.\-]*\s*[=:]\s*)"
                    rf"(?P<value>[^&;,{_STOP})]+)")
# Passwords of store URLs given to this process (see ``remember``). Process-wide because every line
# that leaves the process (cli's one-line errors, a background thread's error, artifacts, run names)
# passes through ``redact``, most far from where the URL was given: a password written without the
# URL around it (a driver's message, PGPASSWORD) is hidden only if every redact knows it.
_SEEN: set[str] = set()
MIN_SEEN = 4  # shorter ones would hide ordinary letters everywhere; URL forms are hidden by pattern


def redact(text: Any) -> str:
    """``text`` with every password hidden (URLs, query/DSN parameters, passwords seen in store URLs)."""
    out = str(text)
    out = _USERINFO.sub(lambda m: f"{m['head']}:{MASK}@" if m["pw"] != MASK else m[0], out)
    out = _PARAM.sub(lambda m: f"{m['head']}{MASK}", out)
    for secret in sorted(_SEEN, key=len, reverse=True):
        out = out.replace(secret, MASK)
    return out


def secrets_in(url: str) -> set[str]:
    """The passwords in ``url`` (userinfo and secret parameters), raw and percent-decoded."""
    found = {m["pw"] for m in _USERINFO.finditer(url)} | {m["value"] for m in _PARAM.finditer(url)}
    found |= {unquote(s) for s in found}
    return {s for s in found if s and s != MASK}


def remember(*urls: str | None) -> None:
    """Hide the passwords of these store URLs (and libpq's $PGPASSWORD) wherever they appear later,
    even outside a URL."""
    for url in urls:
        if url:
            _SEEN.update(s for s in secrets_in(url) if len(s) >= MIN_SEEN)
    if len(os.environ.get("PGPASSWORD", "")) >= MIN_SEEN:
        _SEEN.add(os.environ["PGPASSWORD"])


def has_secret(text: str) -> bool:
    return redact(text) != text


def scrub(err: BaseException | str, url: str | None = None) -> str:
    """The first line of an error message with passwords hidden, at most 300 characters."""
    remember(url)
    text = str(err).strip()
    line = text.splitlines()[0] if text else type(err).__name__
    return redact(line)[:300]


def redact_tree(value: Any) -> Any:
    """A JSON-like structure (dicts, lists, strings) with every string redacted."""
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_tree(v) for v in value]
    return redact(value) if isinstance(value, str) else value
