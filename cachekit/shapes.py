"""Structured values by annotation: a typed value to its plain form and back.

The codec stores plain values (``dict``, ``list``, ``str``, numbers, ...). A *shape* turns a
typed value into that plain form when it is stored and rebuilds it, validated, when it is
read; the type comes only from an annotation — ``@cached``'s return annotation or
``Cache.get(key, type=User)`` — never from the stored bytes, so no class is ever imported by
a name another writer chose.

The plain forms (what another process or language reads in the store):

* dataclass -> ``dict`` of its ``__init__`` fields (fields with ``init=False`` are left to
  ``__post_init__``); ``NamedTuple`` -> ``dict`` of its fields; ``TypedDict`` -> ``dict``;
* pydantic v2 model -> ``model.model_dump(mode="python")`` (datetimes stay datetimes for the
  codec; enum members become their values), rebuilt with ``Model.model_validate``, so the
  model's own config (extra fields, strictness, validators) decides what fits;
* ``Enum`` member -> its ``value``;
* ``list[X]``, ``tuple[X, ...]``, ``set[X]``, ``dict[K, V]``, ``X | None``, unions, nested
  to any depth: the same container of the items' plain forms.

Reading back is strict for stdlib types: a dict with a key that is not a field, a missing
required field, a value of the wrong type (``int`` for ``str``), an enum value that is no
member — each is a :class:`ShapeMismatch`, which the cache reads as a miss with one
rate-limited warning: a value stored by an older version of a type is recomputed, never
returned half-built. A union takes the first of its types the value fits.

Annotations without a structured type in them (``int``, ``str``, ``dict``,
``list[dict]``, ``Any``, none at all) have no shape: such values go to the codec as they
are, at no cost.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import enum
import operator
import sys
import types
import typing
from collections.abc import Callable
from typing import Any, Final

from cachekit.codec import DecodeError
from cachekit.errors import CacheValueError

__all__ = ["Shape", "ShapeMismatch", "as_shape", "returned_shape", "shape_of", "untyped"]

_Fn = Callable[[Any], Any]


class ShapeMismatch(DecodeError):
    """A stored plain value does not fit the annotation it is read as (the type changed
    since it was stored, or another writer stored something else): read as a miss."""


class Shape:
    """How the values of one annotation are stored: ``dump(value)`` gives the plain form
    the codec writes, ``load(plain)`` rebuilds the value and raises :class:`ShapeMismatch`
    when the plain form does not fit. Get one from :func:`shape_of`."""

    __slots__ = ("annotation", "dump", "load")

    def __init__(self, annotation: Any, dump: _Fn, load: _Fn) -> None:
        self.annotation = annotation
        self.dump = dump
        self.load = load

    def __repr__(self) -> str:
        return f"Shape({_name(self.annotation)})"


def _name(annotation: Any) -> str:
    if isinstance(annotation, type):
        return annotation.__qualname__
    return str(annotation).replace("typing.", "")


def _same(value: Any) -> Any:
    return value


_PLAIN_SHAPE: Final = Shape(Any, _same, _same)


# --- nodes: the (dump, load) pair of one annotation inside a shape -----------------------


class _Node:
    """One annotation's converters. ``plain``: its values need no conversion (built-ins
    only; ``load`` still checks them); ``free``: no check either (``Any``)."""

    __slots__ = ("dump", "free", "load", "plain")

    def __init__(self, dump: _Fn, load: _Fn, *, plain: bool, free: bool = False) -> None:
        self.dump, self.load, self.plain, self.free = dump, load, plain, free


_ANY: Final = _Node(_same, _same, plain=True, free=True)


def _got(value: Any) -> str:
    return type(value).__qualname__


def _checked(cls: type) -> _Node:
    """A built-in (or codec-registered) class, checked on the way back."""
    name = cls.__qualname__
    if cls is float:

        def load(value: Any) -> Any:
            if type(value) is float:
                return value
            if type(value) is int:
                return float(value)
            raise ShapeMismatch(f"expected float, got {_got(value)}")

    elif cls is int or cls is bool:

        def load(value: Any) -> Any:  # exact: bool is an int, but no int field holds one
            if type(value) is cls:
                return value
            raise ShapeMismatch(f"expected {name}, got {_got(value)}")

    elif cls in (tuple, set, frozenset):

        def load(value: Any) -> Any:  # the codec may read these back as lists
            if isinstance(value, list | tuple | set | frozenset):
                return value if type(value) is cls else cls(value)
            raise ShapeMismatch(f"expected {name}, got {_got(value)}")

    else:

        def load(value: Any) -> Any:
            if isinstance(value, cls):
                return value
            raise ShapeMismatch(f"expected {name}, got {_got(value)}")

    return _Node(_same, load, plain=True)


def _is_pydantic(cls: type) -> bool:
    """Whether ``cls`` is a pydantic model (v1 or v2), found without importing pydantic."""
    return any(
        base.__name__ == "BaseModel" and base.__module__.partition(".")[0] == "pydantic"
        for base in cls.__mro__
    )


def _pydantic(cls: type) -> Any:
    try:
        import pydantic
    except ImportError:
        raise CacheValueError(
            f"{cls.__qualname__} is a pydantic model and pydantic cannot be imported: "
            "pip install 'cachekit[pydantic]'"
        ) from None
    if not issubclass(cls, pydantic.BaseModel):
        raise CacheValueError(
            f"{cls.__qualname__} is a pydantic v1 model: cachekit rebuilds pydantic v2 models "
            "(pydantic.BaseModel); migrate it, or annotate with dict and convert it yourself"
        )
    return pydantic


def _values(plain: Any) -> Any:
    """``plain`` with enum members replaced by their values (pydantic's python-mode dump
    keeps members; the shape reads them back from their values)."""
    kind = type(plain)
    if kind is dict:
        return {_values(k): _values(v) for k, v in plain.items()}
    if kind is list or kind is tuple or kind is set or kind is frozenset:
        return kind(map(_values, plain))
    if isinstance(plain, enum.Enum):
        return plain.value
    return plain


class _Builder:
    """Builds the nodes of one annotation; ``memo`` ties recursive types (a tree of
    dataclasses) to the node being built."""

    def __init__(self) -> None:
        self.memo: dict[type, _Node] = {}

    def build(self, tp: Any) -> _Node:
        if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
            return _ANY
        if tp is None or tp is type(None):
            return _checked(type(None))
        if isinstance(tp, str | typing.ForwardRef):
            raise NameError(f"unresolved forward reference {tp!r}")
        if isinstance(tp, typing.NewType):
            return self.build(tp.__supertype__)
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin is typing.Annotated:
            return self.build(args[0])
        if origin is typing.Union or origin is types.UnionType:
            return self.union(tp, [self.build(arg) for arg in args])
        if origin is typing.Literal:
            return self.literal(args)
        if origin in _SEQUENCES:
            return self.sequence(origin, args)
        if origin in _MAPPINGS:
            key, value = args or (Any, Any)
            return self.mapping(self.build(key), self.build(value))
        if origin is not None or not isinstance(tp, type):
            return _ANY  # type[X], Callable[...], ...: not a value shape; the codec decides
        if tp in self.memo:
            return self.memo[tp]
        if issubclass(tp, enum.Enum):
            return self.enum(tp)
        if typing.is_typeddict(tp):
            hints = typing.get_type_hints(tp)
            keys: Any = tp.__required_keys__  # type: ignore[attr-defined]
            return self.record(tp, hints, keys, dict, isinstance_of=dict)
        if _is_pydantic(tp):
            return self.model(tp)
        if dataclasses.is_dataclass(tp):
            hints = typing.get_type_hints(tp)
            fields = [f for f in dataclasses.fields(tp) if f.init]
            required = {
                f.name
                for f in fields
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            }
            hints = {f.name: hints.get(f.name, Any) for f in fields}
            return self.record(tp, hints, required, tp)
        if issubclass(tp, tuple) and hasattr(tp, "_fields"):  # a NamedTuple
            hints = dict.fromkeys(tp._fields, Any) | typing.get_type_hints(tp)
            required = set(tp._fields) - set(tp._field_defaults)  # type: ignore[attr-defined]
            return self.record(tp, hints, required, tp)
        return _checked(tp)

    # -- containers --

    def sequence(self, origin: Any, args: tuple[Any, ...]) -> _Node:
        if origin is tuple and args and not (len(args) == 2 and args[1] is Ellipsis):
            return self.fixed_tuple([self.build(arg) for arg in args])
        item = self.build(args[0]) if args else _ANY
        kind: type = _KINDS.get(origin, list)
        name = kind.__qualname__
        # plain items: the container goes to the codec as it is; else a list of plain forms
        dump: _Fn = _same if item.plain else lambda value: [item.dump(v) for v in value]

        def load(value: Any) -> Any:
            if not isinstance(value, list | tuple | set | frozenset):
                raise ShapeMismatch(f"expected {name}, got {_got(value)}")
            if item.free:
                return value if type(value) is kind else kind(value)
            try:
                items = [item.load(v) for v in value]
            except ShapeMismatch as exc:
                raise ShapeMismatch(f"an item of a {name}: {exc}") from None
            return items if kind is list else kind(items)

        return _Node(dump, load, plain=item.plain)

    def fixed_tuple(self, items: list[_Node]) -> _Node:
        count, plain = len(items), all(node.plain for node in items)

        def dump(value: Any) -> Any:
            return [node.dump(v) for node, v in zip(items, value, strict=True)]

        def load(value: Any) -> Any:
            if not isinstance(value, list | tuple) or len(value) != count:
                raise ShapeMismatch(f"expected a tuple of {count}, got {_got(value)}")
            return tuple(node.load(v) for node, v in zip(items, value, strict=True))

        return _Node(_same if plain else dump, load, plain=plain)

    def mapping(self, key: _Node, value: _Node) -> _Node:
        if key.plain and value.plain:
            dump: _Fn = _same
        else:

            def dump(mapping: Any) -> Any:
                return {key.dump(k): value.dump(v) for k, v in mapping.items()}

        def load(mapping: Any) -> Any:
            if type(mapping) is not dict:
                raise ShapeMismatch(f"expected dict, got {_got(mapping)}")
            if key.free and value.free:
                return mapping
            try:
                return {key.load(k): value.load(v) for k, v in mapping.items()}
            except ShapeMismatch as exc:
                raise ShapeMismatch(f"an entry of a dict: {exc}") from None

        return _Node(dump, load, plain=key.plain and value.plain)

    def union(self, tp: Any, arms: list[_Node]) -> _Node:
        name = _name(tp)
        load = _first(arms, _load, ShapeMismatch, f"fits none of {name}")
        if all(arm.plain for arm in arms):
            return _ANY if any(arm.free for arm in arms) else _Node(_same, load, plain=True)
        # dump: the structured arms check their class, the plain ones pass anything: first
        by_dump = [arm for arm in arms if not arm.plain] + [arm for arm in arms if arm.plain]
        dump = _first(by_dump, _dump, CacheValueError, f"expected {name}")
        return _Node(dump, load, plain=False)

    @staticmethod
    def literal(values: tuple[Any, ...]) -> _Node:
        allowed = [(type(v), v) for v in values]

        def load(value: Any) -> Any:
            if (type(value), value) in allowed:
                return value
            raise ShapeMismatch(f"expected one of {list(values)!r}, got {value!r}")

        return _Node(_same, load, plain=True)

    # -- classes --

    def enum(self, cls: type[enum.Enum]) -> _Node:
        name = cls.__qualname__

        def dump(value: Any) -> Any:
            if not isinstance(value, cls):
                raise CacheValueError(f"expected a {name} member, got {_got(value)}")
            return value.value

        def load(value: Any) -> Any:
            try:
                return cls(value)
            except (ValueError, TypeError):
                raise ShapeMismatch(f"{value!r} is no {name} member") from None

        return _Node(dump, load, plain=False)

    def model(self, cls: Any) -> _Node:
        pydantic = _pydantic(cls)
        name, validate, invalid = cls.__qualname__, cls.model_validate, pydantic.ValidationError

        def dump(value: Any) -> Any:
            if not isinstance(value, cls):
                raise CacheValueError(f"expected {name}, got {_got(value)}")
            return _values(value.model_dump(mode="python"))

        def load(value: Any) -> Any:
            try:
                return validate(value)
            except invalid as exc:
                first = exc.errors()[0]
                where = ".".join(map(str, first["loc"])) or "(value)"
                raise ShapeMismatch(
                    f"{name}: {exc.error_count()} validation error(s), first: {where}: "
                    f"{first['msg']}"
                ) from None

        return _Node(dump, load, plain=False)

    def record(
        self,
        cls: type,
        hints: dict[str, Any],
        required: collections.abc.Set[str],
        make: Callable[..., Any],
        *,
        isinstance_of: type | None = None,
    ) -> _Node:
        """A dataclass, NamedTuple or TypedDict: a dict of fields, each by its annotation."""
        node = self.memo[cls] = _Node(_same, _same, plain=False)  # recursive types find it
        fields = {name: self.build(tp) for name, tp in hints.items()}
        needed = frozenset(required)
        name = cls.__qualname__
        of: Any = isinstance_of or cls
        is_dict = of is dict

        def dump(value: Any) -> Any:
            if not isinstance(value, of):
                raise CacheValueError(f"expected {name}, got {_got(value)}")
            if not is_dict:
                return {f: node.dump(getattr(value, f)) for f, node in fields.items()}
            unknown = value.keys() - fields.keys()
            if unknown:
                raise CacheValueError(f"{name} has no key(s) {sorted(map(str, unknown))}")
            return {f: fields[f].dump(v) for f, v in value.items()}

        def load(plain: Any) -> Any:
            if type(plain) is not dict:
                raise ShapeMismatch(f"{name}: expected a dict of its fields, got {_got(plain)}")
            values = {}
            for key, value in plain.items():
                field = fields.get(key)
                if field is None:
                    raise ShapeMismatch(f"{name} has no field {key!r}")
                try:
                    values[key] = field.load(value)
                except ShapeMismatch as exc:
                    raise ShapeMismatch(f"{name}.{key}: {exc}") from None
            if not needed <= values.keys():
                missing = sorted(needed - values.keys())
                raise ShapeMismatch(f"{name}: missing required field(s) {missing}")
            try:
                return make(**values)
            except (TypeError, ValueError) as exc:  # __post_init__ checks, pydantic dataclasses
                raise ShapeMismatch(f"{name}: {exc}") from None

        node.dump, node.load = dump, load
        return node


_dump: Final = operator.attrgetter("dump")  # read when called: a recursive type's node
_load: Final = operator.attrgetter("load")  # is filled in after its union is built


def _first(
    arms: list[_Node], pick: Callable[[_Node], _Fn], fails: type[Exception], none: str
) -> _Fn:
    """A union's dump or load: the first arm's that does not fail."""

    def first(value: Any) -> Any:
        for arm in arms:
            try:
                return pick(arm)(value)
            except fails:
                continue
        raise fails(f"{none}, got {_got(value)}")

    return first


_SEQUENCES: Final = frozenset(
    {
        list,
        tuple,
        set,
        frozenset,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Set,
        collections.abc.MutableSet,
        collections.abc.Iterable,
        collections.abc.Collection,
    }
)
_KINDS: Final[dict[Any, type]] = {
    tuple: tuple,
    set: set,
    frozenset: frozenset,
    collections.abc.Set: set,
    collections.abc.MutableSet: set,
}
_MAPPINGS: Final = frozenset({dict, collections.abc.Mapping, collections.abc.MutableMapping})


# --- public entry points ------------------------------------------------------------------

_shapes: dict[Any, Shape | None] = {}


def _build(annotation: Any) -> Shape | None:
    node = _Builder().build(annotation)
    if node.plain:
        return None
    name, inner = _name(annotation), node.load

    def load(plain: Any) -> Any:
        try:
            return inner(plain)
        except ShapeMismatch as exc:  # what the log line says
            raise ShapeMismatch(f"the stored value does not fit {name} (now): {exc}") from None

    return Shape(annotation, node.dump, load)


def _shape(annotation: Any) -> Shape | None:
    """The shape of a resolved annotation, or ``None`` when it needs none; raises
    ``NameError`` for a forward reference that does not resolve (yet)."""
    try:
        return _shapes[annotation]
    except KeyError:
        shape = _shapes[annotation] = _build(annotation)
        return shape
    except TypeError:  # unhashable metadata (Annotated[X, {...}]): built every time
        return _build(annotation)


def shape_of(annotation: Any) -> Shape | None:
    """The :class:`Shape` of ``annotation`` (a class or a typing form), or ``None`` when
    it holds no structured type and its values go to the codec as they are.

    :raises CacheValueError: the annotation names a type that cannot be resolved, a
        pydantic model while pydantic cannot be imported, or a pydantic v1 model.
    """
    try:
        return _shape(annotation)
    except NameError as exc:
        raise CacheValueError(
            f"cannot read the annotation {_name(annotation)}: {exc}; define or import the "
            "names it uses at module level"
        ) from None


def as_shape(annotation: Any) -> Shape:
    """``annotation`` as a :class:`Shape` (a shape as it is; a plain one passes values
    through): what ``Cache.get(key, type=...)`` and ``Cache.set(..., type=...)`` apply."""
    if isinstance(annotation, Shape):
        return annotation
    return shape_of(annotation) or _PLAIN_SHAPE


def _return_annotation(fn: Callable[..., Any]) -> Any:
    raw = fn.__annotations__.get("return", None)
    if not isinstance(raw, str):
        return raw
    holder = types.SimpleNamespace(__annotations__={"return": raw})
    hints = typing.get_type_hints(holder, globalns=getattr(fn, "__globals__", None))
    return hints["return"]


def returned_shape(fn: Callable[..., Any]) -> Shape | None:
    """The shape of ``fn``'s return annotation, resolved now (when ``@cached`` is applied),
    or ``None`` when it needs none. A forward reference that does not resolve yet (a class
    defined below the function) is resolved on the first call instead, which raises
    :class:`CacheValueError` if it still cannot be.

    :raises CacheValueError: the annotation cannot be cached (see :func:`shape_of`).
    """
    try:
        return _shape(_return_annotation(fn))
    except NameError:
        return _later(fn)


def _later(fn: Callable[..., Any]) -> Shape:
    """A shape that resolves ``fn``'s return annotation on first use, then becomes it."""
    shape = Shape(fn.__annotations__.get("return"), _same, _same)

    def resolve() -> None:
        try:
            found = _shape(_return_annotation(fn)) or _PLAIN_SHAPE
        except NameError as exc:
            raise CacheValueError(
                f"@cached {fn.__qualname__}: cannot resolve its return annotation "
                f"{shape.annotation!r} ({exc}); define or import the names it uses at module "
                "level"
            ) from None
        shape.annotation, shape.dump, shape.load = found.annotation, found.dump, found.load

    def dump(value: Any) -> Any:
        resolve()
        return shape.dump(value)

    def load(value: Any) -> Any:
        resolve()
        return shape.load(value)

    shape.dump, shape.load = dump, load
    return shape


def stale_entry(shape: Shape) -> Shape:
    """The shape of ``@cached``'s stale-while-revalidate entries, ``[value, fresh_until]``,
    whose value has ``shape`` (read through the attribute: a lazy shape resolves later)."""

    def dump(entry: Any) -> Any:
        return [shape.dump(entry[0]), entry[1]]

    def load(entry: Any) -> Any:
        if type(entry) is not list or len(entry) != 2:
            raise ShapeMismatch(f"expected a [value, fresh_until] entry, got {_got(entry)}")
        return [shape.load(entry[0]), entry[1]]

    return Shape(shape.annotation, dump, load)


# --- the error of a structured value stored without its type -------------------------------


def _structured(value: Any) -> type | None:
    """The class of the first dataclass, NamedTuple or pydantic model in ``value``."""
    stack = [value]
    while stack:
        item = stack.pop()
        cls = type(item)
        if (
            (dataclasses.is_dataclass(cls) and not isinstance(item, type))
            or (isinstance(item, tuple) and hasattr(cls, "_fields"))
            or ("pydantic" in sys.modules and _is_pydantic(cls))
        ):
            return cls
        if isinstance(item, list | tuple | set | frozenset):
            stack.extend(item)
        elif isinstance(item, dict):
            stack.extend(item.values())
    return None


def untyped(value: Any, error: CacheValueError) -> CacheValueError:
    """The error for a value the codec refused: when it is (or holds) a dataclass,
    NamedTuple or pydantic model, one naming the type and how to declare it; else
    ``error`` itself."""
    cls = _structured(value)
    if cls is None:
        return error
    name = cls.__qualname__
    return CacheValueError(
        f"cannot cache {name} without its type: cachekit stores structured values only "
        f"by annotation. Annotate the @cached function's return type (-> {name}, "
        f"-> list[{name}], ...), or pass the type to the cache: cache.set(key, value, "
        f"type={name}) and cache.get(key, type={name})"
    )
