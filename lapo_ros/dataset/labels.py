"""Success labels of recorded episodes: a YAML mapping from episode name to true/false.

The name is a bag's (its folder's name, or a single bag file's name without suffix) for
``bag_to_hdf5``, an episode file's stem for ALOHA/ACT files, e.g.::

    pick_001: true
    pick_002: false
"""

from __future__ import annotations

import os
from pathlib import Path

from lapo_ros.common.validation import read_yaml_mapping
from lapo_ros.dataset.layout import DatasetReadError


def load_labels(path: str | os.PathLike,
                error: type[Exception] = DatasetReadError) -> dict[str, bool]:
    """Episode name -> success from a labels file; ``error`` names the file and the entry."""
    path = Path(path)
    data = read_yaml_mapping(path, "labels file (episode name -> true/false)", error)
    labels = {}
    for name, value in data.items():
        if not isinstance(value, bool):
            raise error(f"{path}: label of {name!r} must be true or false, got {value!r}")
        labels[str(name)] = value
    return labels
