"""TTL arguments and config durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cachekit.durations import MAX_TTL, parse_config_duration, store_ttl
from cachekit.errors import CacheValueError, ConfigError
from cachekit.stores.memcache.values import LATEST_EXPTIME, RELATIVE_TTL_LIMIT, expiry

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
    "ttl", [-1, -0.5, float("nan"), float("inf"), timedelta(seconds=-1), "5", True, None]
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
    ],
)
def test_config_durations(value: object, seconds: float) -> None:
    """Numbers are milliseconds; unit strings and unit mappings are accepted."""
    assert parse_config_duration(value, "x") == pytest.approx(seconds)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (-5, ">= 0"),
        ("5 minutes", "cannot read"),
        ("", "cannot read"),
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
