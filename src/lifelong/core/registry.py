"""Typed registries mapping names (and aliases users bring from other libraries) to builders."""

from __future__ import annotations

import difflib
import fnmatch
import importlib
import inspect
from collections.abc import Callable, Iterable
from typing import Any, Generic, TypeVar

from lifelong.core.errors import ConfigError, LifelongError, UnknownNameError

T = TypeVar("T", bound=Callable[..., Any])


class Registry(Generic[T]):
    """One kind of named builder (strategy, model, dataset, ...), with aliases and metadata.

    `providers` name the modules whose import registers entries; they are imported on the first
    lookup, so a name resolves wherever it was registered without import-order coupling.
    """

    def __init__(self, kind: str, providers: Iterable[str] = ()) -> None:
        self.kind = kind
        self.providers = tuple(providers)
        self._loaded = not self.providers
        self._builders: dict[str, T] = {}
        self._aliases: dict[str, str] = {}
        self._meta: dict[str, dict[str, Any]] = {}

    def _load(self) -> None:
        if not self._loaded:
            self._loaded = True  # set first: providers may look names up while registering
            for module in self.providers:
                importlib.import_module(module)

    def register(self, name: str, *, aliases: Iterable[str] = (), **meta: Any) -> Callable[[T], T]:
        """Decorator registering a class or factory under `name`, its aliases and metadata."""

        def decorator(builder: T) -> T:
            for key in (name, *aliases):
                if key in self._builders or key in self._aliases:
                    raise LifelongError(f"{self.kind} name {key!r} is registered twice")
            self._builders[name] = builder
            self._meta[name] = dict(meta, aliases=tuple(aliases))
            for alias in aliases:
                self._aliases[alias] = name
            return builder

        return decorator

    def canonical(self, name: str) -> str:
        """The registered name for `name` or one of its aliases (case-insensitive fallback)."""
        self._load()
        if not isinstance(name, str):
            raise UnknownNameError(f"a {self.kind} is chosen by name, a string; got {name!r}. "
                                   f"Known: {', '.join(sorted(self._builders)) or '(none)'}")
        if name in self._builders:
            return name
        if name in self._aliases:
            return self._aliases[name]
        lowered = {k.lower(): k for k in (*self._builders, *self._aliases)}
        if name.lower() in lowered:
            return self.canonical(lowered[name.lower()])
        known = sorted(self._builders)
        close = difflib.get_close_matches(name, [*known, *self._aliases], n=3, cutoff=0.5)
        hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
        raise UnknownNameError(
            f"unknown {self.kind} {name!r}.{hint} Known: {', '.join(known) or '(none)'}"
        )

    def get(self, name: str) -> T:
        """The builder registered as `name` (or an alias)."""
        return self._builders[self.canonical(name)]

    def meta(self, name: str) -> dict[str, Any]:
        """Metadata declared at registration (family, paper, ...)."""
        return self._meta[self.canonical(name)]

    def names(self, pattern: str = "*") -> list[str]:
        """Registered names matching a shell wildcard, sorted."""
        self._load()
        return sorted(n for n in self._builders if fnmatch.fnmatchcase(n, pattern))

    def __contains__(self, name: object) -> bool:
        try:
            self.canonical(str(name))
        except UnknownNameError:
            return False
        return True

    def build(self, name: str, /, *args: Any, **kwargs: Any) -> Any:
        """Call the builder after checking every keyword against its signature at once."""
        builder = self.get(name)
        check_kwargs(builder, kwargs, f"{self.kind} {self.canonical(name)!r}", n_positional=len(args))
        return builder(*args, **kwargs)


def check_kwargs(fn: Callable[..., Any], kwargs: dict[str, Any], what: str, n_positional: int = 0) -> None:
    """Raise one ConfigError listing every unknown and missing keyword of `fn`."""
    sig = inspect.signature(fn)
    params = list(sig.parameters.values())
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return
    bindable = [p for p in params if p.kind not in (p.VAR_POSITIONAL, p.POSITIONAL_ONLY)]
    positional = [p.name for p in params if p.kind is not p.KEYWORD_ONLY]
    skipped = set(positional[:n_positional])
    allowed = {p.name for p in bindable} - skipped
    unknown = sorted(set(kwargs) - allowed)
    missing = sorted(
        p.name
        for p in bindable
        if p.default is p.empty and p.name not in kwargs and p.name not in skipped
    )
    problems = []
    if unknown:
        problems.append(f"unknown keys {unknown}")
    if missing:
        problems.append(f"missing keys {missing}")
    if problems:
        raise ConfigError(f"{what}: {'; '.join(problems)}. Accepted keys: {sorted(allowed)}")
