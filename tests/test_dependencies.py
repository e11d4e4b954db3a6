"""The dependency ranges in pyproject.toml and the oldest-releases lane agree:
constraints/oldest.txt pins every runtime dependency at its lower bound."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

ROOT = Path(__file__).resolve().parent.parent
PROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
# extras that are not runtime dependencies of cachekit
TOOLING = {"all", "bench", "dev", "test"}


def runtime_requirements() -> list[Requirement]:
    found = [Requirement(line) for line in PROJECT["dependencies"]]
    for extra, lines in PROJECT["optional-dependencies"].items():
        if extra not in TOOLING:
            found += [Requirement(line) for line in lines]
    return found


def oldest_pins() -> dict[str, Version]:
    pins = {}
    for line in (ROOT / "constraints" / "oldest.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = Version(version)
    return pins


def lower_bound(requirement: Requirement) -> Version | None:
    bounds = [Version(s.version) for s in requirement.specifier if s.operator in (">=", "==")]
    return max(bounds, default=None)


REQUIREMENTS = runtime_requirements()


@pytest.mark.parametrize(
    "requirement",
    REQUIREMENTS,
    ids=lambda r: r.name,
)
def test_oldest_lane_pins_each_lower_bound(requirement: Requirement) -> None:
    """Each runtime dependency has a lower bound, and constraints/oldest.txt pins exactly it."""
    floor = lower_bound(requirement)
    assert floor is not None, f"{requirement} has no lower bound"
    assert oldest_pins().get(canonicalize_name(requirement.name)) == floor


def test_oldest_pins_are_allowed_releases() -> None:
    """Every pin of a runtime dependency is inside pyproject's range (the lane tests releases
    a user can get)."""
    pins = oldest_pins()
    for requirement in REQUIREMENTS:
        pin = pins.get(canonicalize_name(requirement.name))
        assert pin is not None, f"constraints/oldest.txt does not pin {requirement.name}"
        assert requirement.specifier.contains(pin), f"{requirement.name}=={pin} vs {requirement}"
