"""CSRF protection for every action: a token bound to the browser session and the user.

The session is a random id in a SameSite=Strict, HttpOnly cookie; the token is an HMAC of
(session, user key) under a secret of the console's, carried by the page and sent back in a
header on every POST. Another site can make a browser send the cookie (not with Strict, but
older browsers) yet cannot read the page to learn the token; a token stolen for one user is
worthless for another. Cross-site requests (Origin or Sec-Fetch-Site says so) are refused
before the token is even looked at.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping
from urllib.parse import urlsplit

SESSION_COOKIE = "apprelease_console_session"
TOKEN_HEADER = "X-CSRF-Token"


def new_secret() -> bytes:
    return secrets.token_bytes(32)


def new_session() -> str:
    return secrets.token_urlsafe(24)


def token_for(secret: bytes, session: str, user_key: str) -> str:
    return hmac.new(secret, f"{session}\0{user_key}".encode(), hashlib.sha256).hexdigest()


def cross_site(headers: Mapping[str, str], host: str) -> bool:
    """True when the browser says the request comes from another site."""
    if headers.get("Sec-Fetch-Site", "same-origin") not in ("same-origin", "none"):
        return True
    origin = headers.get("Origin")
    if origin and origin != "null":
        return urlsplit(origin).netloc != host
    return origin == "null"


def check(secret: bytes, session: str | None, user_key: str, headers: Mapping[str, str], host: str) -> str | None:
    """None if the request may act, else why not."""
    if cross_site(headers, host):
        return "cross-site request refused"
    sent = headers.get(TOKEN_HEADER)
    if not session or not sent:
        return "missing CSRF token (reload the page)"
    if not hmac.compare_digest(sent, token_for(secret, session, user_key)):
        return "invalid CSRF token (reload the page)"
    return None
