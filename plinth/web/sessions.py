"""Console sessions: a browser logs in with an API token once and then holds a cookie.

The cookie carries a random 256-bit session id; the server keeps only its sha256,
mapped to the sha256 of the API token the user logged in with (never the plaintext
of either) and the session's CSRF token. Every request re-authenticates that token
hash through :func:`plinth.services.auth.authenticate_hashed`, so a revoked or expired
token, or a disabled user, ends the session at once, and the principal is exactly
the one the REST API would see for the same token.

Sessions live in the server's memory: a restart logs everyone out (they log in
again with their token). A session ends after ``idle_s`` without a request or
``max_age_s`` after login, whichever is first.
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from dataclasses import dataclass

__all__ = ["COOKIE", "ConsoleSession", "SessionStore"]

#: The session cookie's name (HttpOnly, SameSite=Strict, Path=/).
COOKIE = "plinth_session"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass
class ConsoleSession:
    token_hash: str  # sha256 of the API token (what the tokens table stores)
    csrf: str  # the form token of this session
    created: float  # time.monotonic()
    seen: float


class SessionStore:
    """Session id hash -> :class:`ConsoleSession`, thread-safe, bounded."""

    def __init__(
        self, idle_s: float = 8 * 3600, max_age_s: float = 24 * 3600, max_sessions: int = 10_000
    ) -> None:
        self.idle_s = idle_s
        self.max_age_s = max_age_s
        self.max_sessions = max_sessions
        self._sessions: dict[str, ConsoleSession] = {}
        self._lock = threading.Lock()

    def create(self, token_hash: str) -> tuple[str, ConsoleSession]:
        """A new session for the token with hash `token_hash`: (cookie value, session)."""
        sid = secrets.token_urlsafe(32)
        now = time.monotonic()
        sess = ConsoleSession(token_hash, secrets.token_urlsafe(32), now, now)
        with self._lock:
            if len(self._sessions) >= self.max_sessions:
                self._expire(now)
            if len(self._sessions) >= self.max_sessions:  # still full: drop the oldest
                oldest = min(self._sessions, key=lambda k: self._sessions[k].seen)
                del self._sessions[oldest]
            self._sessions[_digest(sid)] = sess
        return sid, sess

    def get(self, sid: str | None) -> ConsoleSession | None:
        """The live session of cookie value `sid`, or None (unknown or expired)."""
        if not sid or len(sid) > 128:
            return None
        key = _digest(sid)
        now = time.monotonic()
        with self._lock:
            sess = self._sessions.get(key)
            if sess is None:
                return None
            if now - sess.seen > self.idle_s or now - sess.created > self.max_age_s:
                del self._sessions[key]
                return None
            sess.seen = now
            return sess

    def drop(self, sid: str | None) -> None:
        """End the session of cookie value `sid` (logout)."""
        if sid:
            with self._lock:
                self._sessions.pop(_digest(sid), None)

    def _expire(self, now: float) -> None:
        dead = [
            k for k, s in self._sessions.items()
            if now - s.seen > self.idle_s or now - s.created > self.max_age_s
        ]  # fmt: skip
        for k in dead:
            del self._sessions[k]
