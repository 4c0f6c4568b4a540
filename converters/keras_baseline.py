"""Time Keras `model.predict` on pre-processed arrays: the Keras baseline of `predict benchmark`.

Run as a child process so TensorFlow never enters the benchmarking process:
    python -m converters.keras_baseline model.h5 --inputs inputs.npz --batch-size 32 --warmup 1 --iterations 3
prints one JSON line: {"seconds": [...], "rows": N}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np


def main(argv: list[str] | None = None) -> int:
    """Load the model once, predict `warmup` + `iterations` times over all rows, print the timings."""
    parser = argparse.ArgumentParser(prog="python -m converters.keras_baseline")
    parser.add_argument("model")
    parser.add_argument(
        "--inputs", required=True, help=".npz of the model's inputs, one array per input, in input order"
    )
    parser.add_argument("--batch-size", type=int, required=True)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iterations", type=int, default=3)
    options = parser.parse_args(argv)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    model = keras.models.load_model(options.model, compile=False)
    with np.load(options.inputs, allow_pickle=False) as archive:
        arrays = [archive[name] for name in archive.files]
    inputs = arrays[0] if len(arrays) == 1 else arrays
    seconds = []
    for iteration in range(options.warmup + options.iterations):
        tick = time.perf_counter()
        model.predict(inputs, batch_size=options.batch_size, verbose=0)
        if iteration >= options.warmup:
            seconds.append(time.perf_counter() - tick)
    print(json.dumps({"seconds": seconds, "rows": len(arrays[0])}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
