"""Provider manifests: what a store provider says about itself, and the schema its
``options`` must match.

A custom store may ship ``manifest.yaml`` beside its module (Gestalt's cache-provider
fields)::

    kind: cache
    source: github.com/acme/cachekit-dynamo
    version: 1.2.0
    displayName: DynamoDB
    description: Amazon DynamoDB as a cachekit store.
    spec:
      configSchemaPath: schema.json     # relative to the manifest; JSON or YAML

When a manager builds the store, its ``options`` (``backend.cache.options``, or a
binding's) are validated against that JSON Schema first (with ``jsonschema``: ``pip
install 'cachekit[manifests]'``): a mismatch is a :class:`~cachekit.errors.ConfigError`
quoting the schema's message and naming the option's path, raised before the store is
built, so before any connection. The built-in stores ship manifests too
(``cachekit/stores/manifests/``); they take no ``options`` (their settings are keys of
their own, checked by :mod:`cachekit.config`), which cachekit checks without
``jsonschema``. :func:`providers` lists every installed provider with its manifest
(``cachekit providers``).
"""

from __future__ import annotations

import difflib
import json
import sys
from collections.abc import Mapping
from dataclasses import dataclass, replace
from functools import cache
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any, Final

from cachekit.errors import ConfigError

__all__ = [
    "MANIFEST_FILE",
    "Manifest",
    "Provider",
    "check_options",
    "load_manifest",
    "manifest_beside",
    "providers",
]

MANIFEST_FILE: Final = "manifest.yaml"
"""The file name a provider's manifest has, beside the store's module."""

_BUILTIN_DIR: Final = Path(__file__).parent / "stores" / "manifests"
_FIELDS: Final = ("kind", "source", "version", "displayName", "description", "spec")
_SPEC_FIELDS: Final = ("configSchemaPath",)


@dataclass(frozen=True)
class Manifest:
    """A provider's ``manifest.yaml``, read and checked.

    :ivar file: the manifest file.
    :ivar config_schema: the JSON Schema file its ``spec.configSchemaPath`` names
        (resolved against the manifest's directory), or ``None``.
    """

    file: Path
    kind: str = "cache"
    source: str = ""
    version: str = ""
    display_name: str = ""
    description: str = ""
    config_schema: Path | None = None

    def fields(self) -> dict[str, str]:
        """The manifest's fields as written in YAML (for ``cachekit providers``)."""
        return {
            "kind": self.kind,
            "source": self.source,
            "version": self.version,
            "displayName": self.display_name,
            "description": self.description,
            "spec.configSchemaPath": "" if self.config_schema is None else str(self.config_schema),
        }

    def schema(self) -> Mapping[str, Any]:
        """The JSON Schema ``spec.configSchemaPath`` names (``{}`` without one).

        :raises ConfigError: the file cannot be read or is not a JSON/YAML mapping.
        """
        if self.config_schema is None:
            return {}
        return _schema(self.config_schema)

    def validate(self, options: Mapping[str, Any], path: str) -> None:
        """Check ``options`` (the store section's ``options`` at config path ``path``)
        against :meth:`schema`.

        :raises ConfigError: the options do not match: the schema's own message, at the
            path of the offending option (``backend.cache.options.port``); or the schema
            itself is invalid; or ``jsonschema`` is not installed.
        """
        schema = self.schema()
        if not schema:
            return
        try:
            from jsonschema.exceptions import best_match
            from jsonschema.validators import validator_for
        except ImportError:
            raise ConfigError(
                f"the store's manifest {self.file} has a config schema, and checking it "
                "needs jsonschema: pip install 'cachekit[manifests]'",
                path=path,
            ) from None
        cls = validator_for(schema)
        try:
            cls.check_schema(schema)
        except Exception as exc:  # jsonschema's SchemaError: the provider's bug
            message = getattr(exc, "message", str(exc))
            raise ConfigError(
                f"the store's config schema {self.config_schema} is not a valid JSON "
                f"Schema: {message}",
                path=path,
            ) from None
        error = best_match(cls(schema).iter_errors(dict(options)))
        if error is None:
            return
        where = path + "".join(
            f"[{part}]" if isinstance(part, int) else f".{part}" for part in error.absolute_path
        )
        raise ConfigError(
            f"{error.message} (the {self.display_name or 'store'} provider's schema "
            f"{self.config_schema})",
            path=where,
        )


def _text(raw: Mapping[str, Any], key: str, file: Path) -> str:
    value = raw.get(key, "")
    if value is None:
        return ""
    if not isinstance(value, str | int | float) or isinstance(value, bool):
        raise ConfigError(f"{key} must be a string, got {value!r}", path=f"{file}: {key}")
    return str(value)


def _reject_unknown(raw: Mapping[str, Any], known: tuple[str, ...], file: Path, at: str) -> None:
    for key in raw:
        if key not in known:
            close = difflib.get_close_matches(str(key), known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"unknown manifest key {at}{key!r}; {hint}known: {', '.join(known)}",
                path=str(file),
            )


@cache
def load_manifest(file: Path) -> Manifest:
    """Read and check a ``manifest.yaml`` (read once per process).

    :raises ConfigError: it cannot be read, is not YAML, is not ``kind: cache``, has an
        unknown key (a misspelt ``configSchemaPath`` would skip the schema), or names a
        schema file that does not exist.
    """
    raw = _read(file)
    if not isinstance(raw, Mapping):
        raise ConfigError("a manifest must be a mapping", path=str(file))
    _reject_unknown(raw, _FIELDS, file, "")
    if raw.get("kind") != "cache":
        raise ConfigError(
            f"kind must be 'cache' (a cachekit store provider), got {raw.get('kind')!r}",
            path=str(file),
        )
    spec = raw.get("spec") or {}
    if not isinstance(spec, Mapping):
        raise ConfigError(f"spec must be a mapping, got {spec!r}", path=str(file))
    _reject_unknown(spec, _SPEC_FIELDS, file, "spec.")
    schema_path = spec.get("configSchemaPath")
    schema = None
    if schema_path is not None:
        if not isinstance(schema_path, str) or not schema_path:
            raise ConfigError(
                f"spec.configSchemaPath must be a file name, got {schema_path!r}", path=str(file)
            )
        schema = (file.parent / schema_path).resolve()
        if not schema.is_file():
            raise ConfigError(
                f"spec.configSchemaPath names {schema_path!r}, which does not exist "
                f"(looked for {schema})",
                path=str(file),
            )
    return Manifest(
        file=file,
        kind="cache",
        source=_text(raw, "source", file),
        version=_text(raw, "version", file),
        display_name=_text(raw, "displayName", file),
        description=_text(raw, "description", file),
        config_schema=schema,
    )


def _read(file: Path) -> Any:
    """A YAML (or JSON) file's data."""
    try:
        text = file.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read: {exc.strerror}", path=str(file)) from None
    if file.suffix == ".json":
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ConfigError(f"not valid JSON: {exc}", path=str(file)) from None
    try:
        import yaml
    except ImportError:
        raise ConfigError(
            "reading a provider manifest needs PyYAML: pip install 'cachekit[manifests]'",
            path=str(file),
        ) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", path=str(file)) from None


@cache
def _schema(file: Path) -> Mapping[str, Any]:
    data = _read(file)
    if not isinstance(data, Mapping):
        raise ConfigError("a JSON Schema must be a mapping (an object)", path=str(file))
    return data


def manifest_beside(cls: type) -> Manifest | None:
    """The manifest shipped beside ``cls``'s module (``manifest.yaml`` in the module's
    directory), or ``None`` when there is none.

    :raises ConfigError: there is one and it is invalid.
    """
    module = sys.modules.get(cls.__module__)
    where = getattr(module, "__file__", None)
    if where is None:
        return None
    file = Path(where).resolve().parent / MANIFEST_FILE
    return load_manifest(file) if file.is_file() else None


def builtin_manifest(name: str) -> Manifest:
    """The manifest of built-in store ``name`` (``cachekit/stores/manifests/<name>.yaml``;
    its version is cachekit's)."""
    from cachekit import __version__

    return replace(load_manifest(_BUILTIN_DIR / f"{name}.yaml"), version=__version__)


def check_options(
    name: str, cls: type, options: Mapping[str, Any], path: str, *, builtin: bool
) -> None:
    """Check a store section's ``options`` before store ``name`` (class ``cls``) is built
    from it: against its manifest's schema (a custom provider), or that it is empty (a
    built-in store, whose settings are keys of its own).

    :param path: the config path of ``options`` (``backend.cache.options``).
    :raises ConfigError: the options do not fit (see :meth:`Manifest.validate`).
    """
    if builtin:
        if options:
            raise ConfigError(
                f"the built-in {name!r} store takes no options (got "
                f"{', '.join(map(repr, options))}): its settings are keys of its own "
                "(connection, defaultTtl, timeouts, and its own section); options are for "
                "custom stores",
                path=path,
            )
        return
    manifest = manifest_beside(cls)
    if manifest is not None:
        manifest.validate(options, path)


@dataclass(frozen=True)
class Provider:
    """An installed store provider, as ``cachekit providers`` lists it.

    :ivar name: what ``store:`` names it by.
    :ivar origin: ``built-in``, or ``entry point (<distribution> <version>)``.
    :ivar target: ``module:Class``.
    :ivar manifest: its manifest, or ``None`` when it ships none.
    :ivar problem: why it cannot be used (a missing driver, a class that does not import,
        an invalid manifest), or ``""``.
    """

    name: str
    origin: str
    target: str
    manifest: Manifest | None
    problem: str = ""


def providers() -> list[Provider]:
    """Every installed provider: the built-in stores, then the ``cachekit.stores`` entry
    points by name, each with its manifest. Importing an entry point's class is how its
    manifest is found; one that fails is listed with the problem."""
    from cachekit.stores import builtin_stores, entry_point_stores, missing_driver

    found = []
    for name, target in builtin_stores():
        missing = missing_driver(name)
        found.append(Provider(name, "built-in", target, builtin_manifest(name), missing))
    for ep in entry_point_stores():
        found.append(_entry_point_provider(ep))
    return found


def _entry_point_provider(ep: EntryPoint) -> Provider:
    dist = getattr(ep, "dist", None)
    origin = f"entry point ({dist.name} {dist.version})" if dist is not None else "entry point"
    try:
        return Provider(ep.name, origin, ep.value, manifest_beside(ep.load()))
    except ConfigError as exc:
        return Provider(ep.name, origin, ep.value, None, f"invalid manifest: {exc}")
    except Exception as exc:  # a provider that does not import: listed, not fatal
        return Provider(ep.name, origin, ep.value, None, f"cannot load: {exc}")
