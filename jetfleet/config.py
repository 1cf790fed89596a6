"""Reading config files (YAML or JSON, which YAML parses too) with errors that name the file, item and field.

Every config loader of jetfleet (fleet inventories, apps, stream and experiment configs) goes through
`read_config_file` and turns pydantic's errors into one line with `describe_validation_error`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from jetfleet.errors import ConfigError


def read_config_file(path: str | Path, what: str) -> Any:
    """Parse a YAML/JSON file; ConfigError `"<path>: no such <what>"` or `"<path>: not valid YAML: ..."`."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: no such {what}")
    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"{path}: cannot read: {e}") from None


def describe_validation_error(
    error: ValidationError,
    raw: dict[str, Any],
    source: str,
    section: str,
    label: Callable[[int, Any], str],
) -> str:
    """One line naming `source`, the item of list `section` (via `label(index, item)`) and the field."""
    first = error.errors()[0]
    loc = list(first["loc"])
    where = source
    if len(loc) >= 2 and loc[0] == section and isinstance(loc[1], int):
        items = raw.get(section) or []
        item = items[loc[1]] if loc[1] < len(items) else {}
        where += f": {label(loc[1], item)}"
        loc = loc[2:]
    message = first["msg"].removeprefix("Value error, ")
    if not loc:
        return f"{where}: {message}"
    return f"{where}: field {'.'.join(str(p) for p in loc)!r}: {message}"
