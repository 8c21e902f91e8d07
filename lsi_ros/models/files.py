"""Reading and writing the project's safetensors files: one place that checks a file is what it says.

Model, task-model and boundaries files share the same first defences (missing, unreadable, another
format) and models and task models store their pattern set the same way; each loader names its own
error type so a caller can tell a bad model from a bad boundaries file.
"""

import json
from pathlib import Path

import numpy as np
from safetensors import SafetensorError, safe_open

from lsi_ros.optics.patterns import PatternSet


def read_safetensors(
    path,
    file_format: str,
    error: type[Exception],
    what: str,
    framework: str = "pt",
    missing: type[Exception] | None = None,
) -> tuple[dict, dict]:
    """(metadata, tensors) of a file whose metadata ``format`` is ``file_format``; a missing file
    raises ``missing`` (default ``error``), an unreadable one or another format raises ``error``."""
    path = Path(path)
    if not path.is_file():
        raise (missing or error)(f"{what} file not found: {path}")
    try:
        with safe_open(str(path), framework) as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except (SafetensorError, OSError, ValueError) as cause:
        raise error(f"{path}: not a readable safetensors file ({cause})") from cause
    if metadata.get("format") != file_format:
        raise error(f"{path}: format is {metadata.get('format')!r}, not {file_format}")
    return metadata, tensors


def write_safetensors(tensors: dict, path, metadata: dict, framework: str = "pt") -> Path:
    """Save ``tensors`` (torch for "pt", numpy for "np") unless ``path`` already holds exactly them and
    ``metadata``: safetensors writes metadata in hash order, so an unchanged rerun would otherwise
    change the file's bytes and show a change in git that holds none."""
    path = Path(path)
    if framework == "pt":
        from safetensors.torch import save_file
    else:
        from safetensors.numpy import save_file
    tensors = {
        name: value.contiguous() if framework == "pt" else np.ascontiguousarray(value)
        for name, value in tensors.items()
    }
    if path.is_file():
        arrays = {
            name: value.detach().cpu().numpy() if framework == "pt" else value
            for name, value in tensors.items()
        }
        try:
            with safe_open(str(path), "np") as f:
                same = (f.metadata() or {}) == metadata and set(f.keys()) == set(arrays)
                same = same and all(_equal(f.get_tensor(name), array) for name, array in arrays.items())
        except (SafetensorError, OSError, ValueError):
            same = False
        if same:
            return path
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(path), metadata=metadata)
    return path


def _equal(stored: np.ndarray, array: np.ndarray) -> bool:
    return stored.dtype == array.dtype and np.array_equal(stored, array)


def stored_pattern_set(
    tensors: dict, metadata: dict, path, error: type[Exception]
) -> tuple[PatternSet, dict]:
    """The pattern set (``patterns.bits``, popped from ``tensors``) and ``info`` of a model file,
    checked against the pattern-set id the file names; KeyError/ValueError for missing parts."""
    info = json.loads(metadata["info"])
    pattern_set = PatternSet(
        bits=tensors.pop("patterns.bits").numpy(),
        resolution=tuple(info["resolution"]),
        kind="learned",
        model_id=metadata["model_id"],
    )
    if pattern_set.pattern_set_id != metadata["pattern_set_id"]:
        raise error(
            f"{path}: patterns hash to {pattern_set.pattern_set_id}, "
            f"the file names {metadata['pattern_set_id']}"
        )
    return pattern_set, info
