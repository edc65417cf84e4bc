"""``redis+sentinel://`` URLs: the Sentinels to ask, the name of the primary they watch, and its database."""

from __future__ import annotations

from dataclasses import dataclass

SCHEMES = ("redis+sentinel://", "rediss+sentinel://")  # rediss: TLS to the Sentinels and the servers alike
EXAMPLE = "redis+sentinel://[USER:PASSWORD@]HOST:26379,HOST:26379/PRIMARY-NAME/DB"


@dataclass(frozen=True)
class SentinelUrl:
    sentinels: tuple[tuple[str, int], ...]
    service: str  # the primary's name in the Sentinels' `sentinel monitor`
    server_url: str  # redis[s]://[credentials@]primary/DB[?options]: how to talk to whichever server is primary
    tls: bool


def parse(url: str) -> SentinelUrl:
    """The URL's parts; ValueError says what is wrong."""
    scheme, _, rest = url.partition("://")
    rest, _, query = rest.partition("?")
    netloc, _, path = rest.partition("/")
    credentials, _, hosts = netloc.rpartition("@")
    sentinels = []
    for item in hosts.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not (sep and host and port.isdecimal() and 0 < int(port) < 65536):
            raise ValueError(f"{item!r} is not HOST:PORT of a Sentinel (expected {EXAMPLE})")
        sentinels.append((host.strip("[]"), int(port)))
    service, _, db = path.partition("/")
    db = db.rstrip("/") or "0"
    if not service or not db.isdecimal():
        raise ValueError(f"expected the primary's name and a database number after the hosts ({EXAMPLE})")
    tls = scheme == "rediss+sentinel"
    server = f"{'rediss' if tls else 'redis'}://{credentials + '@' if credentials else ''}primary/{db}"
    return SentinelUrl(tuple(sentinels), service, server + (f"?{query}" if query else ""), tls)
