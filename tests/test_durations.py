"""TTL arguments and config durations."""

from __future__ import annotations

from datetime import timedelta

import pytest

from cachekit.durations import parse_config_duration, store_ttl
from cachekit.errors import CacheValueError, ConfigError


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
