"""`{split}_raw_predictions.pkl`: the head's dict of NumPy arrays, pickled."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

from predict.writers._atomic import atomic_path


def write_raw_predictions(path: Path, raw_predictions: dict[str, Any]) -> None:
    """Pickle the dict (protocol 4: readable by Python 3.4+ and H2O's own tooling)."""
    with atomic_path(path) as temp, temp.open("wb") as handle:
        pickle.dump(raw_predictions, handle, protocol=4)
