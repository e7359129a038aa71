"""Store URLs with their passwords hidden: the only form in which a URL is printed, logged or tagged."""
from __future__ import annotations


def redact(url: str) -> str:
    """A store URL without its password (safe to print and to tag runs with)."""
    try:
        from sqlalchemy.engine import make_url

        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - not an SQLAlchemy URL (a path, an http address)
        return url


def scrub(err: BaseException | str, url: str) -> str:
    """The first line of an error message, with ``url``'s password hidden, at most 200 characters."""
    text = str(err).strip()
    reason = text.splitlines()[0] if text else type(err).__name__
    reason = reason.replace(url, redact(url))
    try:
        from sqlalchemy.engine import make_url

        secret = make_url(url).password
    except Exception:  # noqa: BLE001 - no URL, no password
        secret = None
    if secret:
        reason = reason.replace(str(secret), "***")
    return reason[:200]
