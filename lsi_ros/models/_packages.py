"""Locating weights inside installed wheels without importing them (both wheels' imports are broken)."""

import importlib.util
from pathlib import Path


def wheel_dir(module: str, package: str) -> Path:
    """Folder of ``module`` as installed by ``package`` (installed with --no-deps)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"{module} not found: pip install --no-deps {package}")
    return Path(spec.submodule_search_locations[0])
