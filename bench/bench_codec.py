"""The codec alone: encode + decode of a plain dict and of a dict holding datetimes and
Decimals, next to pickle (protocol 5), which is what people reach for when msgpack is not
enough (and what cachekit never uses: see docs/values.md).

Run: .venv/bin/python bench/bench_codec.py   (about 20 s)

One process, pinned to one core; cases run round-robin and each ratio is the median of the
per-round ratios against the baseline named in the table.

Cases:
- plain dict (str, int, list) encode, decode, and both: the hot path of every cache set and
  hit, which the built-in types must not slow down; pickle beside it for scale;
- a 10-field dict (4 datetimes, 3 Decimals, a str, an int, a list) encode + decode, against
  pickle dumps + loads (target: within 1.5x of pickle).
"""

from __future__ import annotations

import datetime as dt
import pickle
import sys
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import Case, pin_to_cpu, report, run_rounds

from cachekit.errors import CacheValueError
from cachekit.host import Codec

CPU = "0"
PLAIN = {"id": 42, "name": "widget", "tags": ["a", "b"]}
UTC = dt.UTC
TYPED = {
    "created": dt.datetime(2024, 2, 29, 12, 34, 56, 123456, tzinfo=UTC),
    "updated": dt.datetime(2024, 3, 1, 8, 0, 0, 500000, tzinfo=UTC),
    "shipped": dt.datetime(2024, 3, 2, 9, 15, 1, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    "seen": dt.datetime(2024, 3, 3, 23, 59, 59, 999999),
    "price": Decimal("19.99"),
    "tax": Decimal("3.80"),
    "total": Decimal("23.79"),
    "name": "widget",
    "qty": 3,
    "tags": ["a", "b", "c"],
}


def pickled(value: Any) -> Any:
    return pickle.loads(pickle.dumps(value, protocol=5))


def main() -> None:
    pin_to_cpu(CPU)
    codec = Codec()
    encode, decode = codec.encode, codec.decode
    plain_bytes = encode(PLAIN)
    plain_pickle = pickle.dumps(PLAIN, protocol=5)
    plain_cases = [
        Case("pickle dumps+loads", lambda: pickled(PLAIN)),
        Case("codec encode", lambda: encode(PLAIN), baseline="pickle dumps+loads"),
        Case("codec decode", lambda: decode(plain_bytes), baseline="pickle dumps+loads"),
        Case("codec encode+decode", lambda: decode(encode(PLAIN)), baseline="pickle dumps+loads"),
        Case("pickle loads", lambda: pickle.loads(plain_pickle), baseline="codec decode"),
    ]
    run_rounds(plain_cases, ops=50_000)
    print(report(f"plain dict {PLAIN} ({len(plain_bytes)} bytes)", plain_cases))
    try:
        typed_bytes = encode(TYPED)
    except CacheValueError as exc:  # a codec without the built-in types
        print(f"\ntyped dict: not supported by this codec ({exc})")
        return
    assert decode(typed_bytes) == TYPED == pickled(TYPED)
    typed_cases = [
        Case("pickle dumps+loads", lambda: pickled(TYPED)),
        Case("codec encode+decode", lambda: decode(encode(TYPED)), baseline="pickle dumps+loads"),
        Case("codec encode", lambda: encode(TYPED), baseline="pickle dumps+loads"),
        Case("codec decode", lambda: decode(typed_bytes), baseline="pickle dumps+loads"),
    ]
    run_rounds(typed_cases, ops=20_000)
    size = f"{len(typed_bytes)} bytes; pickle {len(pickle.dumps(TYPED, protocol=5))}"
    print()
    print(report(f"10-field dict: 4 datetimes, 3 Decimals, str, int, list ({size})", typed_cases))


if __name__ == "__main__":
    main()
