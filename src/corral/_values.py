"""Immutable value classes without `dataclasses`.

`dataclasses` imports `inspect` and compiles generated methods with `exec`, which costs about
15 ms at start-up; corral wraps every command an agent runs, so its value types use this
small decorator instead. Fields are the class annotations, defaults the class attributes.
"""

from __future__ import annotations


_MISSING_DEFAULT = object()


class field:  # noqa: N801 - mirrors dataclasses.field for readability
    __slots__ = ("default_factory", "compare")

    def __init__(self, default=_MISSING_DEFAULT, default_factory=None, compare: bool = True, hash: bool = True):  # noqa: A002
        if default is not _MISSING_DEFAULT:
            default_factory = lambda: default  # noqa: E731
        self.default_factory = default_factory
        self.compare = compare and hash


_MISSING = object()


def frozen(cls):
    fields = tuple(cls.__dict__.get("__annotations__", {}))
    defaults = {}
    compared = []
    for name in fields:
        default = cls.__dict__.get(name, _MISSING)
        if isinstance(default, field):
            if default.compare:
                compared.append(name)
            if default.default_factory is not None:
                defaults[name] = default
            delattr(cls, name)
        else:
            compared.append(name)
            if default is not _MISSING:
                defaults[name] = default
    cls._fields = fields
    cls._defaults = defaults
    cls._compared = tuple(compared)
    cls.__init__ = _init
    cls.__repr__ = _repr
    cls.__eq__ = _eq
    cls.__hash__ = _hash
    cls.__setattr__ = _setattr
    cls.__delattr__ = _setattr
    return cls


def _init(self, *args, **kwargs):
    fields = self._fields
    if len(args) > len(fields):
        raise TypeError(f"{type(self).__name__} takes at most {len(fields)} positional arguments")
    values = dict(zip(fields, args))
    for name, val in kwargs.items():
        if name not in fields or name in values:
            raise TypeError(f"{type(self).__name__}: unexpected or repeated argument {name!r}")
        values[name] = val
    for name in fields:
        if name not in values:
            default = self._defaults.get(name, _MISSING)
            if default is _MISSING:
                raise TypeError(f"{type(self).__name__}: missing argument {name!r}")
            values[name] = default.default_factory() if isinstance(default, field) else default
    self.__dict__.update(values)


def _repr(self):
    inner = ", ".join(f"{n}={self.__dict__[n]!r}" for n in self._fields)
    return f"{type(self).__name__}({inner})"


def _key(self):
    return tuple(self.__dict__[n] for n in self._compared)


def _eq(self, other):
    if type(other) is not type(self):
        return NotImplemented
    return _key(self) == _key(other)


def _hash(self):
    return hash(_key(self))


def _setattr(self, name, *_):
    raise AttributeError(f"{type(self).__name__} is immutable; use replace()")


def replace(obj, **changes):
    values = {n: obj.__dict__[n] for n in obj._fields}
    values.update(changes)
    return type(obj)(**values)
