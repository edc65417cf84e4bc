from __future__ import annotations

from bridge.sentinel_url import SentinelUrl, parse


def test_a_sentinel_url_names_the_sentinels_the_primary_and_how_to_talk_to_the_servers() -> None:
    assert parse("rediss+sentinel://app:s3cret@s1:26379,[::1]:26380/mymaster/2?ssl_ca_certs=/ca.pem") == SentinelUrl(
        sentinels=(("s1", 26379), ("::1", 26380)),
        service="mymaster",
        server_url="rediss://app:s3cret@primary/2?ssl_ca_certs=/ca.pem",
        tls=True,
    )
    assert parse("redis+sentinel://s1:26379/mymaster") == SentinelUrl(
        (("s1", 26379),), "mymaster", "redis://primary/0", False
    )
