"""Policies by name: `make_policy("fixed-batch:32")` builds one; unknown names are rejected.

A policy module registers a factory with `@register("name")`. The factory takes the text after the
first ':' (or None) and returns a fresh Policy. Modules listed in `_POLICY_MODULES` are imported on
first use, so adding a policy is: write the module, decorate its factory, add the module here.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from jetfleet.errors import ConfigError, UnknownNameError
from policies.base import Policy

PolicyFactory = Callable[[str | None], Policy]

_POLICY_MODULES = [
    "policies.baselines",
    "policies.loudva",
    "policies.jetfleet",
    "policies.overload",
    "policies.slo_admission",
    "policies.jellyfish",
    "policies.juggler",
    "policies.variants",
]
_FACTORIES: dict[str, PolicyFactory] = {}
_loaded = False


def register(name: str) -> Callable[[PolicyFactory], PolicyFactory]:
    """Decorator: register a policy factory under `name`."""

    def wrap(factory: PolicyFactory) -> PolicyFactory:
        if name in _FACTORIES and _FACTORIES[name] is not factory:
            raise ConfigError(f"policy name {name!r} registered twice")
        _FACTORIES[name] = factory
        return factory

    return wrap


def _load() -> None:
    global _loaded
    if _loaded:
        return
    for module in _POLICY_MODULES:
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name != module:  # a missing dependency inside an existing module is a real error
                raise
    _loaded = True


def make_policy(spec: str) -> Policy:
    """Build a policy from `name` or `name:arg` (e.g. `interval:0.2`)."""
    _load()
    name, _, arg = spec.partition(":")
    factory = _FACTORIES.get(name)
    if factory is None:
        raise UnknownNameError("policy", spec, _FACTORIES)
    try:
        return factory(arg or None)
    except ValueError as e:
        raise ConfigError(f"policy {spec!r}: {e}") from None
