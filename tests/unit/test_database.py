"""The services' connection pool: what every connection it opens is set up with."""

from datatracker.database import create_pool


async def test_pooled_connections_read_times_in_utc() -> None:
    pool = create_pool("postgresql://tracker@db.invalid/tracker", max_size=1, name="api")

    assert "-c TimeZone=UTC" == pool.kwargs["options"]


async def test_the_urls_own_options_are_kept() -> None:
    url = "postgresql://tracker@db.invalid/tracker?options=-c%20search_path%3Dtracker"
    pool = create_pool(url, max_size=1, name="api")

    assert "-c search_path=tracker -c TimeZone=UTC" == pool.kwargs["options"]
