"""One `Config` for every way rsgi is configured, in three parts that import in one direction:

- `schema`: the frozen `Config` dataclass (every setting, its flags, env names and help) and `FIELDS`;
- `sources`: defaults < config file < the Django settings' ``RSGI`` dict < ``RSGI_*`` environment < flags, merged and
  validated by `build`;
- `core`: `Config.core()`, the frozen, normalised `CoreConfig` the Rust core takes (`core_view`).

Imports run one way: errors <- core <- schema <- sources; nothing here imports the rest of rsgi.
"""

from __future__ import annotations

from .core import DEFAULT_ACCESS_LOG_FORMAT, CoreConfig, TlsCore, core_items, core_view
from .errors import ConfigError
from .schema import FIELDS, MIB, Config, check_address, setting
from .sources import GUNICORN_HOOKS, build, env_names, from_env, from_file, parse_value

__all__ = [
    "DEFAULT_ACCESS_LOG_FORMAT",
    "FIELDS",
    "GUNICORN_HOOKS",
    "MIB",
    "Config",
    "ConfigError",
    "CoreConfig",
    "TlsCore",
    "build",
    "check_address",
    "core_items",
    "core_view",
    "env_names",
    "from_env",
    "from_file",
    "parse_value",
    "setting",
]
