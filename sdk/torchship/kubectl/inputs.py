"""`--input name=file.npy` / `name=file.json` into arrays. A JSON array takes the datatype the
model's metadata declares for that input (JSON numbers carry none); .npy keeps its own."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from ..client.tensors import DTYPES


def parse(specs: Sequence[str], declared: Mapping[str, str]) -> dict[str, np.ndarray]:
    """`declared`: input name -> OIP datatype, from the model's metadata (may be empty)."""
    out: dict[str, np.ndarray] = {}
    for spec in specs:
        name, sep, file = spec.partition("=")
        if not sep or not name or not file:
            raise ValueError(f"--input {spec!r}: expected NAME=FILE.npy or NAME=FILE.json")
        path = Path(file)
        if path.suffix == ".npy":
            out[name] = np.load(path, allow_pickle=False)
        elif path.suffix == ".json":
            out[name] = from_json(json.loads(path.read_text()), declared.get(name))
        else:
            raise ValueError(f"--input {spec!r}: the file must end in .npy or .json")
    return out


def from_json(data: object, datatype: str | None) -> np.ndarray:
    if datatype == "BYTES":
        return np.array(data, dtype=object)
    if datatype in DTYPES:
        return np.array(data, dtype=DTYPES[datatype].newbyteorder("="))
    array = np.array(data)
    # Undeclared: float32 and int64, what torch models most often take.
    if array.dtype.kind == "f":
        return array.astype(np.float32)
    return array
