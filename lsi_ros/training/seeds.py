"""Seed ranges and the face cache's place, without numpy: what the `lsi` parsers need to show."""

import os
from pathlib import Path

SHARD_SIZE = 256
HELD_OUT_SEED_START = 1_000_000
DEFAULT_PSI = 0.7


def default_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lsi_ros" / "data"
