"""Time the whole `python -m predict --config ...` command, process start to exit, as the user waits for it.

Next to it, in fresh processes on the same rows:
- raw onnxruntime: `InferenceSession` creation + `session.run` over the batches, on arrays the
  pipeline's own loader decoded beforehand (the interpreter, NumPy and onnxruntime already imported;
  their import is reported on its own);
- Keras (for a `.h5` model, when TensorFlow is installed): `keras.models.load_model` + one
  `model.predict` over the same arrays (TensorFlow's import reported on its own).

Runs:
- cold: a fresh output folder, so a `.h5` is converted to ONNX first (a child process);
- warm: the conversion cached (the case users meet from the second run on), `--runs` times;
  each round runs warm, stages, raw and (every other round) Keras back to back;
- stages: the same warm command, with timestamps taken in the process at the edges of its stages
  (the pipeline's functions wrapped from outside, nothing in `predict` changed): import (process
  start to `predict` imported), config, rows (dataframe read), model load (conversion cache check
  and session creation), first batch (from the loaded model to the first batch post-processed),
  scoring (the other batches), metrics (finishing the predictions and their metrics), writing
  (prediction files and report.json), summary (printing it) and exit (interpreter shutdown).
  Its total is the same command's wall time plus the wrappers' own cost, shown against the plain runs.

Usage (the data of docs/performance.md: `python scripts/make_benchmark_data.py /tmp/bench`):
    python scripts/bench_whole_command.py /tmp/bench/benchmark.yaml --runs 5 [--set KEY=VALUE ...]
        [--compare OTHER_CHECKOUT/src:OTHER_CHECKOUT]   (another version of predict, in the same rounds)
prints a Markdown summary and writes whole_command.json beside the config (or `--output`).
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
STAGES = ("import", "config", "rows", "model load", "first batch", "scoring", "metrics", "writing", "summary", "exit")


def main() -> int:
    """Parse the options; run the cold, warm, staged and baseline measurements; print and save them."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", type=Path)
    parser.add_argument("--runs", type=int, default=5, help="warm runs of each kind (default: 5); medians reported")
    parser.add_argument("--cold-runs", type=int, default=1, help="runs in a fresh output folder (default: 1)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--no-keras", action="store_true", help="skip the Keras baseline")
    parser.add_argument(
        "--compare",
        metavar="PYTHONPATH",
        help="also time another version of predict (e.g. an older checkout's src), its warm and staged runs "
        "in the same rounds; it shares the warm output folder",
    )
    parser.add_argument("-o", "--output", type=Path, help="JSON file (default: whole_command.json beside the config)")
    options = parser.parse_args()
    config = options.config.resolve()

    with tempfile.TemporaryDirectory(prefix="whole-command-") as scratch:
        scratch = Path(scratch)
        cold = [
            _timed(_command(config, scratch / f"cold{index}", options.overrides)) for index in range(options.cold_runs)
        ]
        warm_dir = scratch / "warm"
        _timed(_command(config, warm_dir, options.overrides))  # converts (if .h5) and caches: later runs are warm
        report = json.loads(next(warm_dir.glob("*_report.json")).read_text())
        inputs = _decoded_inputs(config, Path(report["onnx_model"]), options.overrides, scratch)
        batch_size = report["task"]["runtime"]["batch_size"]
        threads = report["task"]["runtime"]["threads"]
        with_keras = not options.no_keras and Path(report["model"]).suffix.lower() in (".h5", ".hdf5")
        # In rounds, one of each kind back to back, so that a busy spell of a shared machine weighs on
        # every kind alike (Keras every other round: it is the slowest).
        warm, stages, raw, keras, load = [], [], [], [], []
        compared: dict = {"pythonpath": options.compare, "warm_seconds": [], "stage_seconds": []}
        for round_index in range(options.runs):
            warm.append(_timed(_command(config, warm_dir, options.overrides)))
            stages.append(_staged_run(config, warm_dir, options.overrides, scratch))
            if options.compare:
                compared["warm_seconds"].append(_timed(_command(config, warm_dir, options.overrides), options.compare))
                compared["stage_seconds"].append(
                    _staged_run(config, warm_dir, options.overrides, scratch, options.compare)
                )
            raw.append(_child(["raw", str(report["onnx_model"]), str(inputs), str(batch_size), str(threads)]))
            if with_keras and round_index % 2 == 0:
                keras.append(_child(["keras", report["model"], str(inputs), str(batch_size)]))
            load.append(os.getloadavg()[0])

    results = {
        "config": str(config),
        "rows": report["rows"],
        "batch_size": batch_size,
        "provider": report["provider"],
        "decoding_workers": report["decoding_workers"],
        "cpus": os.cpu_count(),
        "load_average": load,
        "cold_seconds": cold,
        "warm_seconds": warm,
        "stage_seconds": stages,
        "compared": compared if options.compare else None,
        "raw": raw,
        "keras": keras or None,
    }
    output = options.output or config.parent / "whole_command.json"
    output.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    print(format_markdown(results))
    print(f"wrote {output}")
    return 0


def format_markdown(results: dict) -> str:
    """The medians (and ranges) as the lines docs/performance.md quotes."""
    warm = statistics.median(run["wall"] for run in results["warm_seconds"])
    warm_cpu = statistics.median(run["cpu"] for run in results["warm_seconds"])
    lines = [
        (
            f"`{results['config']}`: {results['rows']} rows, batch {results['batch_size']}, {results['provider']}, "
            f"decoding workers {results['decoding_workers']}, {results['cpus']} CPUs, 1-minute load average after "
            f"each round {_spread(results['load_average'])}"
        ),
        "",
        (
            f"- whole command, cold (fresh output folder): "
            f"{_spread([run['wall'] for run in results['cold_seconds']])} s "
            f"(CPU {_spread([run['cpu'] for run in results['cold_seconds']])} s)"
        ),
        (
            f"- whole command, warm (conversion cached): median {warm:.2f} s "
            f"({_spread([run['wall'] for run in results['warm_seconds']])}); CPU median {warm_cpu:.2f} s"
        ),
    ]
    lines.append(_stages_line("stages, warm", results["stage_seconds"]))
    compared = results["compared"]
    if compared:
        lines.append(
            f"- compared ({compared['pythonpath']}), warm: median "
            f"{statistics.median(run['wall'] for run in compared['warm_seconds']):.2f} s "
            f"({_spread([run['wall'] for run in compared['warm_seconds']])}); CPU median "
            f"{statistics.median(run['cpu'] for run in compared['warm_seconds']):.2f} s"
        )
        lines.append(_stages_line("compared, stages", compared["stage_seconds"]))
    raw = results["raw"]
    raw_total = statistics.median(run["session"] + run["run"] for run in raw)
    lines.append(
        f"- raw onnxruntime, session creation + session.run on decoded arrays: median {raw_total:.2f} s "
        f"(session {statistics.median(run['session'] for run in raw):.2f} s, run "
        f"{statistics.median(run['run'] for run in raw):.2f} s; its process with imports and exit: "
        f"{statistics.median(run['process'] for run in raw):.2f} s, CPU "
        f"{statistics.median(run['process_cpu'] for run in raw):.2f} s) "
        f"-> whole command / raw = {warm / raw_total:.2f}x"
    )
    if results["keras"]:
        keras = results["keras"]
        keras_total = statistics.median(run["load_model"] + run["predict"] for run in keras)
        lines.append(
            f"- Keras load_model + predict: median {keras_total:.2f} s (load_model "
            f"{statistics.median(run['load_model'] for run in keras):.2f} s, predict "
            f"{statistics.median(run['predict'] for run in keras):.2f} s; "
            "its process with TensorFlow's import and exit: "
            f"{statistics.median(run['process'] for run in keras):.2f} s, CPU "
            f"{statistics.median(run['process_cpu'] for run in keras):.2f} s) "
            f"-> Keras / whole command = {keras_total / warm:.2f}x "
            f"(process to process: {statistics.median(run['process'] for run in keras) / warm:.2f}x)"
        )
    return "\n".join(lines)


def _stages_line(title: str, staged: list[dict[str, float]]) -> str:
    medians = {stage: statistics.median(run[stage] for run in staged) for stage in STAGES}
    total = statistics.median(sum(run[stage] for stage in STAGES) for run in staged)
    return f"- {title}, medians of {len(staged)} runs (total {total:.2f} s with the timestamps): " + ", ".join(
        f"{stage} {seconds:.3f}" for stage, seconds in medians.items()
    )


def _spread(values: list[float]) -> str:
    return " / ".join(f"{value:.2f}" for value in values)


def _command(config: Path, output_dir: Path, overrides: list[str]) -> list[str]:
    settings = [part for override in [*overrides, f"output.dir={output_dir}"] for part in ("--set", override)]
    return ["--config", str(config), *settings, "--quiet", "--overwrite"]


def _timed(arguments: list[str], pythonpath: str | None = None) -> dict[str, float]:
    """`python -m predict ARGUMENTS`: seconds from its start to its exit (wall), and the CPU seconds
    (user + system) it and its children used, which a shared machine inflates less than the wall time."""
    started, used = time.monotonic(), _children_cpu()
    subprocess.run([sys.executable, "-m", "predict", *arguments], check=True, cwd=ROOT, env=_environment(pythonpath))
    return {"wall": time.monotonic() - started, "cpu": _children_cpu() - used}


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _environment(pythonpath: str | None) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": pythonpath} if pythonpath else dict(os.environ)


def _staged_run(
    config: Path, output_dir: Path, overrides: list[str], scratch: Path, pythonpath: str | None = None
) -> dict[str, float]:
    """One warm run with timestamps at its stages' edges (see the module docstring)."""
    marks_path = scratch / "marks.json"
    environment = {**_environment(pythonpath), "BENCH_MARKS": str(marks_path)}
    started = time.monotonic()
    environment["BENCH_STARTED"] = repr(started)
    command = [sys.executable, __file__, "--child", "stages", *_command(config, output_dir, overrides)]
    subprocess.run(command, check=True, cwd=ROOT, env=environment)
    ended = time.monotonic()
    marks = json.loads(marks_path.read_text())
    edges = [started, *(marks[stage] for stage in STAGES[:-1]), ended]
    return {stage: edges[index + 1] - edges[index] for index, stage in enumerate(STAGES)}


def _child_stages(arguments: list[str]) -> int:
    """The staged run's process: `predict run` as `python -m predict` runs it, with the stages' ends
    recorded (`time.monotonic()` is one clock for every process on Linux)."""
    marks: dict[str, float] = {}
    import predict.cli
    import predict.config
    import predict.pipeline

    try:  # where this version loads configs, registers problem types and writes files
        import predict.problems
        import predict.task
        import predict.writers.run
    except ImportError:  # older versions: predict.config, predict.heads.HEADS and predict.pipeline
        pass

    marks["import"] = time.monotonic()  # what `predict run` imports before it reads the config

    def after(name: str, function):
        def wrapped(*args, **kwargs):
            result = function(*args, **kwargs)
            marks[name] = time.monotonic()
            return result

        return wrapped

    def before(name: str, function):
        def wrapped(*args, **kwargs):
            marks[name] = time.monotonic()
            return function(*args, **kwargs)

        return wrapped

    loading = predict.task if hasattr(predict, "task") else predict.config  # older versions: predict.config
    loading.load_config = after("config", loading.load_config)
    pipeline = predict.pipeline
    pipeline.read_rows = after("rows", pipeline.read_rows)
    if hasattr(pipeline, "build_plan"):  # the runner and the head, from one plan
        pipeline.build_plan = after("model load", pipeline.build_plan)
        writer = predict.writers.run.RunWriter
        writer.write = before("metrics", writer.write)  # metrics end where the files begin
        heads = {spec.head for spec in predict.problems.PROBLEMS.values()}
    else:  # older versions
        pipeline.load_runner = after("model load", pipeline.load_runner)
        pipeline._write_files = before("metrics", pipeline._write_files)
        heads = set(pipeline.HEADS.values())
    pipeline.run_task = after("writing", pipeline.run_task)
    for head in heads:
        postprocess = head.postprocess

        def timed(self, *args, _postprocess=postprocess, **kwargs):
            result = _postprocess(self, *args, **kwargs)
            marks.setdefault("first batch", time.monotonic())
            marks["scoring"] = time.monotonic()
            return result

        head.postprocess = timed
    code = predict.cli.main(arguments)
    marks["summary"] = time.monotonic()
    Path(os.environ["BENCH_MARKS"]).write_text(json.dumps(marks))
    if hasattr(predict.cli, "entry_point"):  # what `python -m predict` does after main() (older versions: nothing)
        gc.freeze()
    return code


def _decoded_inputs(config: Path, onnx_path: Path, overrides: list[str], scratch: Path) -> Path:
    """Every row's model inputs as the pipeline decodes them, in one .npz (one array per input, in order)."""
    import numpy as np

    from predict.plan import batches_in_process, read_rows
    from predict.runners.backend import load_runner
    from predict.task import load_config

    task = load_config(config, overrides)
    runner = load_runner(task, onnx_path)
    task, dataframe = read_rows(task)
    batches = [batch.inputs for batch in batches_in_process(task, dataframe, runner)]
    path = scratch / "inputs.npz"
    names = [spec.name for spec in runner.inputs]
    np.savez(
        path,
        **{
            f"{index:02d}_{name}": np.concatenate([batch[name] for batch in batches])
            for index, name in enumerate(names)
        },
    )
    return path


def _child(arguments: list[str]) -> dict[str, float]:
    """A baseline in a fresh process; its timings, plus the process's own wall time."""
    started, used = time.monotonic(), _children_cpu()
    completed = subprocess.run(
        [sys.executable, __file__, "--child", *arguments], check=True, capture_output=True, text=True, cwd=ROOT
    )
    process, process_cpu = time.monotonic() - started, _children_cpu() - used
    return {**json.loads(completed.stdout.strip().splitlines()[-1]), "process": process, "process_cpu": process_cpu}


def _child_raw(onnx_path: str, inputs: str, batch_size: str, threads: str) -> int:
    """Raw onnxruntime: session creation with its defaults (only the thread count shared) + session.run."""
    tick = time.perf_counter()
    import numpy as np
    import onnxruntime

    imported = time.perf_counter() - tick
    with np.load(inputs) as archive:
        arrays = {name.split("_", 1)[1]: archive[name] for name in archive.files}
    tick = time.perf_counter()
    options = onnxruntime.SessionOptions()
    if int(threads):
        options.intra_op_num_threads = int(threads)
    session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    created = time.perf_counter()
    rows, size = len(next(iter(arrays.values()))), int(batch_size)
    for start in range(0, rows, size):
        session.run(None, {name: array[start : start + size] for name, array in arrays.items()})
    done = time.perf_counter()
    print(json.dumps({"import": imported, "session": created - tick, "run": done - created}))
    return 0


def _child_keras(model: str, inputs: str, batch_size: str) -> int:
    """Keras: load_model + one predict over all rows (TensorFlow's import timed apart)."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    tick = time.perf_counter()
    import keras
    import numpy as np

    imported = time.perf_counter() - tick
    with np.load(inputs) as archive:
        arrays = [archive[name] for name in archive.files]
    tick = time.perf_counter()
    network = keras.models.load_model(model, compile=False)
    loaded = time.perf_counter()
    network.predict(arrays[0] if len(arrays) == 1 else arrays, batch_size=int(batch_size), verbose=0)
    done = time.perf_counter()
    print(json.dumps({"import": imported, "load_model": loaded - tick, "predict": done - loaded}))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--child"]:
        kind, rest = sys.argv[2], sys.argv[3:]
        child = {
            "stages": lambda: _child_stages(rest),
            "raw": lambda: _child_raw(*rest),
            "keras": lambda: _child_keras(*rest),
        }
        sys.exit(child[kind]())
    sys.exit(main())
