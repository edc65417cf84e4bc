"""Who may use the page and the API: password hashes, sessions kept in the store, CSRF tokens, the login limit."""

from __future__ import annotations

import asyncio
import base64
import functools
import hashlib
import hmac
import json
import logging
import secrets
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

from bridge.config import WebSettings
from bridge.store import Store

logger = logging.getLogger(__name__)

# scrypt at 32 MiB and about 0.1 s a check; the parameters travel in the hash, so they can be raised later.
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**15, 8, 1
MAX_SCRYPT_N = 2**20
SESSION_COOKIE = "alarm_bridge_session"
LOGIN_COOKIE = "alarm_bridge_login"  # the login form's CSRF token (double submit: there is no session yet)
SESSION_TTL = 12 * 3600.0  # a session ends this long after the login, whatever happens in between
COOKIE_PATH = "/ui"


def hash_password(password: str, n: int = SCRYPT_N) -> str:
    """``scrypt$N$r$p$salt$hash`` (salt and hash in base64): what ``web.users`` holds for each user."""
    salt = secrets.token_bytes(16)
    digest = _scrypt(password, salt, n, SCRYPT_R, SCRYPT_P)
    return f"scrypt${n}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt" or not 2 <= int(n) <= MAX_SCRYPT_N:
            return False
        expected = base64.b64decode(digest, validate=True)
        actual = _scrypt(password, base64.b64decode(salt, validate=True), int(n), int(r), int(p))
    except ValueError:  # a malformed hash matches no password
        return False
    return hmac.compare_digest(actual, expected)


def _scrypt(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode(), salt=salt, n=n, r=r, p=p, maxmem=256 * 1024 * 1024, dklen=32)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@functools.cache
def _dummy_hash() -> str:
    """Checked for unknown users, so that they take as long as known ones."""
    return hash_password(secrets.token_hex(8))


async def check_login(web: WebSettings, user: str, password: str) -> bool:
    """The password against the user's hash, in a thread (scrypt takes a while); unknown users take as long."""
    stored = web.users.get(user)
    ok = await asyncio.to_thread(verify_password, password, stored or _dummy_hash())
    return ok and stored is not None


def api_caller(request: Request, web: WebSettings) -> str | None:
    """The name of the API token in ``Authorization: Bearer ...``, compared in constant time with every token."""
    scheme, _, given = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not given.strip():
        return None
    found = None
    for name, token in web.api_tokens.items():
        if token and hmac.compare_digest(token.encode(), given.strip().encode()):
            found = name
    return found


@dataclass(frozen=True)
class Session:
    key: str  # the store key (a hash of the cookie's id, so the store never holds a usable cookie)
    user: str
    csrf: str


def signing_key(request: Request, web: WebSettings) -> bytes:
    """``web.session_secret``; without one, a random key for this process (sessions end on restart)."""
    if web.session_secret:
        return web.session_secret.encode()
    key: bytes | None = getattr(request.app.state, "web_session_key", None)
    if key is None:
        key = secrets.token_bytes(32)
        request.app.state.web_session_key = key
    return key


def _sign(key: bytes, value: str) -> str:
    return base64.urlsafe_b64encode(hmac.new(key, value.encode(), hashlib.sha256).digest()).decode().rstrip("=")


def _fingerprint(password_hash: str) -> str:
    """Changing a user's hash in the config ends the user's sessions."""
    return hashlib.sha256(password_hash.encode()).hexdigest()[:16]


async def start_session(request: Request, response: Response, web: WebSettings, store: Store, user: str) -> None:
    sid = secrets.token_urlsafe(32)
    key = f"web:session:{hashlib.sha256(sid.encode()).hexdigest()}"
    data = {"user": user, "csrf": secrets.token_urlsafe(32), "pw": _fingerprint(web.users[user])}
    await store.put(key, json.dumps(data), SESSION_TTL)
    set_cookie(request, response, SESSION_COOKIE, f"{sid}.{_sign(signing_key(request, web), sid)}", SESSION_TTL)


async def current_session(request: Request, web: WebSettings, store: Store) -> Session | None:
    """The request's session, if its cookie is genuine, the store still has it and its user still exists."""
    sid, _, signature = request.cookies.get(SESSION_COOKIE, "").partition(".")
    if not sid or not hmac.compare_digest(signature.encode(), _sign(signing_key(request, web), sid).encode()):
        return None
    key = f"web:session:{hashlib.sha256(sid.encode()).hexdigest()}"
    raw = await store.get(key)
    if raw is None:
        return None
    data = json.loads(raw)
    stored = web.users.get(data["user"])
    if stored is None or data.get("pw") != _fingerprint(stored):
        return None
    return Session(key, data["user"], data["csrf"])


async def end_session(request: Request, response: Response, store: Store, session: Session | None) -> None:
    if session is not None:
        await store.delete(session.key)
    response.delete_cookie(SESSION_COOKIE, path=COOKIE_PATH, secure=is_https(request), httponly=True, samesite="lax")


def csrf_ok(expected: str, given: str) -> bool:
    return bool(expected) and hmac.compare_digest(expected.encode(), given.encode())


def login_token(request: Request) -> tuple[str, bool]:
    """The login form's CSRF token, and whether it is new (and has to be set as a cookie)."""
    current = request.cookies.get(LOGIN_COOKIE, "")
    return (current, False) if len(current) >= 32 else (secrets.token_urlsafe(32), True)


def is_https(request: Request) -> bool:
    """The request's scheme. Behind a proxy, uvicorn sets it from X-Forwarded-Proto for the config's
    ``trusted_proxies`` only (none by default); the header is never read here."""
    return request.url.scheme == "https"


def set_cookie(request: Request, response: Response, name: str, value: str, max_age: float) -> None:
    response.set_cookie(
        name,
        value,
        max_age=int(max_age),
        path=COOKIE_PATH,
        secure=is_https(request),
        httponly=True,
        samesite="lax",
    )


def client_address(request: Request) -> str:
    return request.client.host if request.client else "unknown"


async def reserve_login(store: Store, web: WebSettings, address: str) -> str | None:
    """A slot for one login attempt from ``address``, or None when its failed logins used them all.

    Slots are store keys that expire ``login_window`` after the failure, claimed atomically before the password
    is checked (so parallel guesses cannot slip through); a successful login gives its slot back.
    """
    for i in range(web.login_attempts):
        key = f"web:login-failure:{address}:{i}"
        if await store.put_new(key, "1", web.login_window):
            return key
    return None


USER_BACKOFF_MAX = 60.0  # seconds: the longest wait between tries for one user name, so its owner is never shut out


def _user_key(user: str) -> str:
    return hashlib.sha256(user.encode()).hexdigest()[:32]  # any name a client types: a short key


async def user_turn(store: Store, web: WebSettings, user: str) -> float:
    """0 if the user name may be tried now, else the seconds to wait. Past ``login_attempts`` failures for a name
    (from any address), one try per wait, which doubles with each failure up to USER_BACKOFF_MAX: guessing from
    many addresses is slowed, and the owner waits at most that long."""
    failures = int(await store.get(f"web:login-user:{_user_key(user)}") or 0)
    if failures < web.login_attempts:
        return 0.0
    wait = min(2.0 ** (failures - web.login_attempts), USER_BACKOFF_MAX)
    return 0.0 if await store.put_new(f"web:login-user-turn:{_user_key(user)}", "1", wait) else wait


async def user_failed(store: Store, web: WebSettings, user: str) -> None:
    key = f"web:login-user:{_user_key(user)}"
    await store.put(key, str(int(await store.get(key) or 0) + 1), web.login_window)


async def user_succeeded(store: Store, user: str) -> None:
    await store.delete(f"web:login-user:{_user_key(user)}")
