"""What a DMD is told to display: a pattern-set file, a model's learned patterns, or a classical
family generated on demand.

Generated sets are written to a cache folder so every process (driver, sampler, encoder) reads
the same file and can check its content hash against the announced ``pattern_set_id``.
"""

import os
from pathlib import Path

from lsi_ros.optics import patterns

FAMILIES = {
    "hadamard-split": lambda p, res, seed: patterns.hadamard_split_patterns(p, res),
    "hadamard-reference": lambda p, res, seed: patterns.hadamard_reference_patterns(p, res),
    "bernoulli": lambda p, res, seed: patterns.bernoulli_patterns(p, res, seed=seed),
}


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "lsi_ros" / "patterns"


def resolve(spec: str, resolution: int = 256, cache_dir=None) -> tuple[patterns.PatternSet, Path]:
    """``spec``: a pattern-set file, ``model:<name or file>`` (the learned patterns of a model or a
    task model), or ``<family>:<P>[:seed]``. Returns the set and the file every process can read it from."""
    family, _, rest = spec.partition(":")
    if family == "model":
        from lsi_ros.models.checkpoint import load_model
        from lsi_ros.models.registry import find_model
        from lsi_ros.models.task import is_task_model, load_task_model

        path = find_model(rest)
        pattern_set = (load_task_model(path) if is_task_model(path) else load_model(path)).pattern_set
    elif family in FAMILIES:
        count, _, seed = rest.partition(":")
        try:
            num_patterns, seed = int(count), int(seed or 0)
        except ValueError:
            message = f"pattern set '{spec}' is not <family>:<patterns>[:seed]"
            raise patterns.PatternSetError(message) from None
        pattern_set = FAMILIES[family](num_patterns, resolution, seed)
    else:
        return patterns.load_pattern_set(spec), Path(spec).resolve()
    file_name = pattern_set.pattern_set_id.replace(":", "-") + ".safetensors"
    path = Path(cache_dir or default_cache_dir()) / file_name
    if not path.is_file():
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        patterns.save_pattern_set(pattern_set, tmp)
        tmp.replace(path)
    return pattern_set, path


def load_announced(pattern_set_id: str, uri: str) -> patterns.PatternSet:
    """Load the file a driver announced and check it holds the announced patterns."""
    pattern_set = patterns.load_pattern_set(uri)
    if pattern_set.pattern_set_id != pattern_set_id:
        raise patterns.PatternSetError(
            f"{uri} holds pattern set {pattern_set.pattern_set_id}, but {pattern_set_id} was announced"
        )
    return pattern_set
