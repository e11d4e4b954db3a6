"""TTL arguments and config durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cachekit.durations import MAX_TTL, parse_config_duration, parse_duration, store_ttl
from cachekit.errors import CacheValueError, ConfigError
from cachekit.host import CacheManager
from cachekit.stores.memcache.values import LATEST_EXPTIME, RELATIVE_TTL_LIMIT, expiry
from cachekit.stores.memory import MemoryStore
from cachekit.testing import FakeClock

DAY = 86400


@pytest.mark.parametrize(
    ("ttl", "expected"),
    [
        (60, 60.0),
        (0.25, 0.25),
        (timedelta(minutes=2), 120.0),
        (0, None),
        (0.0, None),
        (timedelta(0), None),
    ],
)
def test_store_ttl(ttl: int | float | timedelta, expected: float | None) -> None:
    """Seconds and timedeltas become float seconds; zero means no expiry (None)."""
    assert store_ttl(ttl) == expected


@pytest.mark.parametrize(
    "ttl", [-1, -0.5, float("nan"), float("inf"), timedelta(seconds=-1), "5x", True, None]
)
def test_store_ttl_rejects(ttl: object) -> None:
    """Negative, NaN, infinite and non-numeric TTLs raise CacheValueError."""
    with pytest.raises(CacheValueError, match="ttl"):
        store_ttl(ttl)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        (30000, 30.0),
        (1.5, 0.0015),
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1d", 86400.0),
        ("2w", 1209600.0),
        (" 1.5 s ", 1.5),
        ({"minutes": 5}, 300.0),
        ({"hours": 1, "seconds": 30}, 3630.0),
        (0, 0.0),
        ("5 minutes", 300.0),
        ("PT1M30S", 90.0),
        ("1h30m", 5400.0),
    ],
)
def test_config_durations(value: object, seconds: float) -> None:
    """Numbers are milliseconds; unit strings and unit mappings are accepted."""
    assert parse_config_duration(value, "x") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-5, ">= 0"),
        ("5 fortnights", "unknown unit 'fortnights'"),
        ("", "cannot read"),
        ("P1Y", "no fixed length"),
        ("1 month", "no fixed length"),
        ({"years": 1}, "no fixed length"),
        ({"fortnights": 1}, "unit"),
        ({"minutes": "5"}, "number"),
        (True, "duration"),
        ([5], "duration"),
        ({"hours": -1}, ">= 0"),
    ],
)
def test_config_duration_errors_name_the_path(value: object, message: str) -> None:
    """A bad duration raises ConfigError naming the config path and the accepted forms."""
    with pytest.raises(ConfigError, match=message) as info:
        parse_config_duration(value, "backend.cache.defaultTtl")
    assert str(info.value).startswith("backend.cache.defaultTtl")


# every string and mapping form, in seconds: the one grammar shared by Python and config
GRAMMAR = [
    ("90s", 90.0),
    ("5m", 300.0),
    ("1h30m", 5400.0),
    ("1h 30m", 5400.0),
    ("2d", 172800.0),
    ("1w", 604800.0),
    ("500ms", 0.5),
    ("1.5h", 5400.0),
    (".5s", 0.5),
    ("2 seconds", 2.0),
    ("1 minute", 60.0),
    ("5 minutes", 300.0),
    ("3 Hours", 10800.0),
    ("1 day", 86400.0),
    ("2 weeks", 1209600.0),
    ("10 secs", 10.0),
    ("250 msecs", 0.25),
    ("PT1M30S", 90.0),
    ("P1D", 86400.0),
    ("P1DT2H", 93600.0),
    ("PT0.5S", 0.5),
    ("PT1,5S", 1.5),
    ("P2W", 1209600.0),
    ("pt5m", 300.0),
    ({"minutes": 5}, 300.0),
    ({"days": 1, "milliseconds": 500}, 86400.5),
]


@pytest.mark.parametrize(("value", "seconds"), GRAMMAR)
def test_python_and_config_read_every_form_alike(value: object, seconds: float) -> None:
    """Each string and mapping form means the same seconds as a Python ttl= and in config."""
    assert store_ttl(value) == pytest.approx(seconds)  # type: ignore[arg-type]
    assert parse_config_duration(value, "x") == pytest.approx(seconds)
    if isinstance(value, str):
        assert parse_duration(value) == pytest.approx(seconds)


def test_bare_numbers_are_seconds_in_python_and_milliseconds_in_config() -> None:
    """The one difference between the two: what a bare number means."""
    assert store_ttl(90) == 90.0
    assert parse_config_duration(90, "x") == 0.09


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("P1Y", "no fixed length"),
        ("P2M", "no fixed length"),
        ("1y", "no fixed length"),
        ("3 months", "no fixed length"),
        ({"months": 1}, "no fixed length"),
        ("5", r"no unit \(write '5s' or '5ms'\)"),
        ("1m1h", "largest first"),
        ("5m5m", "largest first"),
        ("1 fortnight", "unknown unit 'fortnight'"),
        ({"fortnights": 1}, "unknown duration unit 'fortnights'"),
        ("P", "ISO 8601"),
        ("PT", "ISO 8601"),
        ("P1DT", "ISO 8601"),
        ("-5s", "cannot read"),
        ("soon", "cannot read"),
    ],
)
def test_unreadable_durations_name_the_parameter_the_reason_and_the_forms(
    value: object, reason: str
) -> None:
    """A string or mapping that is no duration raises CacheValueError naming the parameter,
    why, and the accepted forms."""
    with pytest.raises(CacheValueError, match=reason) as info:
        store_ttl(value, "stale_ttl")  # type: ignore[arg-type]
    message = str(info.value)
    assert message.startswith("stale_ttl: ")
    assert "a timedelta" in message
    assert "'PT1M30S' (ISO 8601)" in message


def test_a_wrong_type_names_the_parameter() -> None:
    """A value of no duration type names the parameter it was passed as."""
    with pytest.raises(CacheValueError, match=r"^lock_timeout must be a duration, got list"):
        store_ttl([5], "lock_timeout")  # type: ignore[arg-type]


def test_a_duration_beyond_the_maximum_names_the_parameter() -> None:
    """The 10-year bound applies to strings too and names the parameter."""
    with pytest.raises(CacheValueError, match=r"^per must be at most .* not milliseconds$"):
        store_ttl("3651d", "per")


@pytest.mark.parametrize("ttl", [MAX_TTL + 1, 2**32, 1e20, timedelta(days=3651 * 2)])
def test_store_ttl_refuses_beyond_the_maximum(ttl: float | timedelta) -> None:
    """A TTL above MAX_TTL (10 years) raises CacheValueError saying how to ask for no
    expiry."""
    with pytest.raises(CacheValueError, match=r"at most .* ttl=0 for no expiry"):
        store_ttl(ttl)


def test_store_ttl_admits_the_maximum() -> None:
    """MAX_TTL itself is a valid TTL, passed through unchanged."""
    assert store_ttl(MAX_TTL) == MAX_TTL
    assert store_ttl(timedelta(seconds=MAX_TTL)) == MAX_TTL


@pytest.mark.parametrize("now", [1_700_000_000.5, 1_900_000_000.0, 2**31 - 40 * DAY, 2**31 + DAY])
@pytest.mark.parametrize("ttl", [30 * DAY + 0.5, 40 * DAY, 365 * DAY, MAX_TTL])
def test_memcached_expiry_is_always_in_the_future_and_representable(now: float, ttl: float) -> None:
    """Every TTL the rule admits maps to a memcached exptime that is a signed 32-bit time in
    the future (or a relative one of at most 30 days): never a past time, never refused."""
    exptime = expiry(ttl, now=lambda: now)
    assert 0 < exptime <= LATEST_EXPTIME
    if exptime > RELATIVE_TTL_LIMIT:  # read by memcached as a Unix time
        assert now < exptime <= now + ttl + 1
    else:
        assert exptime == RELATIVE_TTL_LIMIT
        assert now + RELATIVE_TTL_LIMIT >= LATEST_EXPTIME


def test_memcached_expiry_caps_at_2038() -> None:
    """A TTL that would end after 2038-01-19 ends then (early, never late or at once)."""
    now = 1_900_000_000.0  # 2030
    assert expiry(MAX_TTL, now=lambda: now) == LATEST_EXPTIME == 2**31 - 1


def test_the_cache_api_takes_duration_strings() -> None:
    """set, incr, expire and touch read ttl strings as the decorators do; a bad one raises
    CacheValueError naming ttl before any write."""
    clock = FakeClock(1_700_000_000.0)
    cache = CacheManager(store=MemoryStore(clock=clock)).for_plugin("p")
    cache.set("a", 1, ttl="PT1M")
    cache.incr("n", ttl="90 seconds")
    cache.set("b", 1, ttl=0)
    assert cache.expire("b", "2m") is True
    cache.set("c", 1, ttl="1s")
    assert cache.touch("c", {"minutes": 3}) is True
    clock.advance(61)
    assert (cache.get("a"), cache.get("n"), cache.get("b"), cache.get("c")) == (None, 1, 1, 1)
    clock.advance(60)
    assert (cache.get("n"), cache.get("b"), cache.get("c")) == (None, None, 1)
    with pytest.raises(CacheValueError, match=r"^ttl: cannot read '5 parsecs'"):
        cache.set("d", 1, ttl="5 parsecs")
    assert cache.get("d") is None
