"""Seed ranges and the face cache's place, without numpy: what the `lsi` parsers need to show."""

import os
from pathlib import Path

SHARD_SIZE = 256
HELD_OUT_SEED_START = 1_000_000
DEFAULT_PSI = 0.7


def default_data_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lsi_ros" / "data"


# Streamed training (lsi_ros.training.stream): a forward-only cursor from here, never reaching the
# ranges above; its validation faces are a fixed block below it.
STREAM_SEED_START = 10_000_000
STREAM_VALIDATION_SEED_START = 9_000_000
