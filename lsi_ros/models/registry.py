"""Finding model files by name (``m128``) or path, on a checkout, a venv or a colcon install."""

import os
import sys
from pathlib import Path

SUFFIX = ".safetensors"
# The model a camera runs when none is named; behind the face locator (framing auto), m128's encoder
# trained on the locator's framing errors (same patterns).
DEFAULT_MODEL, FRAMED_MODEL = "m128", "m128-framed"
# The shipped boundaries fitted on each shipped model's estimates (config/decode.yaml reads codes so).
SHIPPED_ESTIMATE_BOUNDARIES = ("attributes-m32", "attributes-m64", "attributes-m128", "attributes-m256")


def search_path() -> list[Path]:
    """Where named models are looked up, first match wins: $LSI_ROS_MODELS, the checkout's models/,
    the install's share/lsi_ros/models (venv prefix, then every AMENT_PREFIX_PATH entry)."""
    folders = [Path(p) for p in os.environ.get("LSI_ROS_MODELS", "").split(os.pathsep) if p]
    folders.append(Path(__file__).resolve().parents[2] / "models")
    prefixes = [sys.prefix, *os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep)]
    folders += [Path(p) / "share" / "lsi_ros" / "models" for p in prefixes if p]
    return folders


def find_model(name_or_path: str) -> Path:
    """A model file path from a path or a bare name; FileNotFoundError lists where it looked."""
    path = Path(name_or_path)
    if path.suffix == SUFFIX or os.sep in name_or_path:
        if path.is_file():
            return path
        raise FileNotFoundError(f"model file not found: {path}")
    folders = search_path()
    for folder in folders:
        candidate = folder / f"{name_or_path}{SUFFIX}"
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no model named '{name_or_path}' in {', '.join(map(str, folders))}")
