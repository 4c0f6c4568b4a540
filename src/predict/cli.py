"""Command line: `predict --config task.yaml`, `predict convert model.h5 -o model.onnx`,
`predict show RUN_DIR`, `predict report RUN_DIR`, `predict export --config task.yaml -o model.onnx`,
`predict serve --config task.yaml`.

Every error a user can cause is a `PredictError`: printed as `error: ...` (one line per problem),
exit code 2, no traceback unless `--debug`.
"""

from __future__ import annotations

import argparse
import gc
import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from predict.enums import Engine
from predict.errors import ConfigError, PredictError

if TYPE_CHECKING:
    from predict.pipeline import RunSummary

_COMMANDS = ("run", "convert", "show", "report", "benchmark", "export", "serve")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse `argv` (default: sys.argv[1:]), run the command and return the exit code."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] not in _COMMANDS and arguments[0] not in ("-h", "--help"):
        arguments.insert(0, "run")  # `predict --config x.yaml` is `predict run --config x.yaml`
    parser = _parser()
    options = parser.parse_args(arguments)
    if options.command is None:
        parser.print_help(sys.stderr)
        return 2
    logging.basicConfig(format="warning: %(message)s", level=logging.WARNING, stream=sys.stderr)
    try:
        return options.handler(options)
    except PredictError as error:
        if options.debug:
            raise
        for line in str(error).splitlines() or [type(error).__name__]:
            print(f"error: {line}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: no prediction file was written by this run", file=sys.stderr)
        return 130


def entry_point() -> int:
    """The `predict` command and `python -m predict`: `main()` in a process that exits right after.

    At exit the interpreter's final garbage collections walk every object still alive (pandas',
    onnx's, the config's, ...); frozen first, they are skipped. Measured on the 96-row example on
    the shared 2-core VM: exit 0.37 s -> 0.09 s (medians of 6; issue 18). Not for `main()` called
    in a process that goes on: frozen objects are never collected.
    """
    code = main()
    gc.freeze()
    return code


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="predict",
        description="Batch predictions of Keras (.h5) and ONNX models next to the ground truth, "
        "written as H2O Hydrogen Torch prediction files.",
        epilog="`predict --config task.yaml` is short for `predict run --config task.yaml`.",
    )
    commands = parser.add_subparsers(dest="command")
    for add_command in (_add_run, _add_convert, _add_show, _add_report, _add_benchmark, _add_export, _add_serve):
        command = add_command(commands)
        command.add_argument("--debug", action="store_true", help="show the traceback of errors")
    return parser


def _add_run(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    run = commands.add_parser("run", help="score a dataframe as configured in a task YAML")
    run.add_argument("--config", required=True, type=Path, help="task YAML")
    run.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a config key, e.g. --set runtime.batch_size=64 (repeatable)",
    )
    run.add_argument("--quiet", action="store_true", help="no progress bar and no summary")
    run.add_argument("--resume", action="store_true", help="continue an interrupted run from its last checkpoint")
    run.add_argument("--overwrite", action="store_true", help="replace this split's existing prediction files")
    run.set_defaults(handler=_run)
    return run


def _add_convert(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    convert = commands.add_parser("convert", help="convert a Keras .h5 model to ONNX and check parity with Keras")
    convert.add_argument("model", type=Path, help="Keras model saved with model.save('x.h5')")
    convert.add_argument("-o", "--output", type=Path, help="ONNX file to write (default: beside the model)")
    convert.add_argument("--opset", type=int, default=17, help="ONNX opset (default: 17)")
    # Shared with `python -m converters.keras_to_onnx` (a cheap import: no TensorFlow, no onnx).
    from converters.keras_to_onnx import add_load_arguments, add_tolerance_arguments

    add_tolerance_arguments(convert)
    add_load_arguments(convert)
    convert.set_defaults(handler=_convert)
    return convert


def _add_show(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    show = commands.add_parser("show", help="print a run's predictions next to the actual values, and its metrics")
    show.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the folder a run wrote (output.dir)")
    show.add_argument("--split", choices=("validation", "test"), help="default: validation when the folder has it")
    show.add_argument("--rows", type=_count, default=20, help="rows to print, 0 for all (default: 20)")
    show.add_argument("--worst", action="store_true", help="worst predictions first (needs labels)")
    show.set_defaults(handler=_show)
    return show


def _add_report(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    report = commands.add_parser("report", help="write a self-contained report.html of a run: plots, samples, metrics")
    report.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the folder a run wrote (output.dir)")
    report.add_argument("--split", choices=("validation", "test"), help="default: every split in the folder")
    report.add_argument("-o", "--output", type=Path, help="HTML file to write (default: RUN_DIR/report.html)")
    report.add_argument("--samples", type=_count, default=12, help="sample inputs per split (default: 12)")
    report.set_defaults(handler=_report)
    return report


def _add_benchmark(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    benchmark = commands.add_parser(
        "benchmark", help="measure throughput and latency against raw onnxruntime (and Keras for .h5 models)"
    )
    benchmark.add_argument("--config", required=True, type=Path, help="task YAML")
    benchmark.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    benchmark.add_argument(
        "--batch-sizes", type=_batch_sizes, default=[1, 8, 32, 128], help="comma separated (default: 1,8,32,128)"
    )
    benchmark.add_argument("--warmup", type=int, default=1, help="untimed runs per batch size (default: 1)")
    benchmark.add_argument(
        "--iterations", type=int, default=3, help="timed runs per batch size; medians are reported (default: 3)"
    )
    benchmark.add_argument(
        "--no-keras", dest="keras", action="store_false", help="leave out the Keras baseline (it imports TensorFlow)"
    )
    benchmark.add_argument(
        "-o", "--output", type=Path, help="folder for benchmark.json and benchmark.md (default: output.dir/benchmark)"
    )
    benchmark.set_defaults(handler=_benchmark)
    return benchmark


def _add_export(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    export = commands.add_parser(
        "export", help="write one ONNX file with the task's pre- and post-processing inside, checked on its rows"
    )
    export.add_argument("--config", required=True, type=Path, help="task YAML")
    export.add_argument("-o", "--output", required=True, type=Path, help="ONNX file to write")
    export.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    export.add_argument(
        "--precision", choices=("fp32", "fp16", "int8"), default="fp32", help="the network's arithmetic (default: fp32)"
    )
    export.add_argument("--rows", type=_count, help="compare with the pipeline on the first N rows (default: all)")
    export.add_argument(
        "--calibration-rows", type=_count, default=128, help="int8: rows to calibrate on (default: 128)"
    )
    export.add_argument("--atol", type=float, default=1e-4, help="fp32 graph vs pipeline tolerance (default: 1e-4)")
    export.set_defaults(handler=_export)
    return export


def _export(options: argparse.Namespace) -> int:
    from predict.export.exporter import export_task, format_report
    from predict.export.precision import ExportPrecision
    from predict.task import load_config

    task = load_config(options.config, options.overrides)
    report = export_task(
        task,
        options.output,
        precision=ExportPrecision(options.precision),
        rows=options.rows,
        calibration_rows=options.calibration_rows,
        atol=options.atol,
    )
    print(format_report(report))
    return 0


def _add_serve(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    serve = commands.add_parser(
        "serve",
        help="serve the task over HTTP until SIGTERM/SIGINT: the Open Inference Protocol (as Triton), "
        "POST /predict and /metrics, with dynamic batching",
    )
    serve.add_argument("--config", required=True, type=Path, help="task YAML (its serve: section sets the batching)")
    serve.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    serve.add_argument(
        "--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine only)"
    )
    serve.add_argument("--port", type=_port, default=8000, help="TCP port (default: 8000)")
    serve.add_argument(
        "--engine",
        choices=[engine.value for engine in Engine],
        help="local: one process (the default, or runtime.engine); ray: serve.replicas copies on Ray Serve",
    )
    serve.set_defaults(handler=_serve)
    return serve


def _run(options: argparse.Namespace) -> int:
    helper_started = _start_metrics_import(options)
    try:
        from predict.pipeline import run_task
        from predict.task import load_config

        task = load_config(options.config, options.overrides)
        summary = run_task(task, progress=not options.quiet, resume=options.resume, overwrite=options.overwrite)
    finally:
        if helper_started:
            from predict.report import metrics

            metrics.stop_helper()
    if not options.quiet:
        print(format_summary(summary))
    return 0


def _start_metrics_import(options: argparse.Namespace) -> bool:
    """Start scikit-learn's import before the run's own imports when the config asks for metrics that use
    it: forked now, it overlaps their 0.5-0.8 s on the other core (the 96-row example 1.8 -> 1.3 s on 2 cores,
    docs/performance.md). The run stops it if the split turns out to have no labels."""
    from predict.config import read_yaml
    from predict.enums import ProblemType
    from predict.report import metrics

    try:
        raw, _ = read_yaml(options.config, options.overrides)
        problem_type = ProblemType(raw.get("problem_type"))
    except (PredictError, ValueError):
        return False  # the run's own config check reports it
    data = raw.get("data") if isinstance(raw.get("data"), dict) else {}
    if metrics.config_needs_scikit_learn(problem_type, data.get("label_columns"), data.get("split")):
        return metrics.start_import()
    return False


def _batch_sizes(text: str) -> list[int]:
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, e.g. 1,8,32 (got {text!r})") from None


def _benchmark(options: argparse.Namespace) -> int:
    from predict.benchmark import format_markdown, run_benchmark, write_results
    from predict.task import load_config

    task = load_config(options.config, options.overrides)
    results, facts = run_benchmark(
        task,
        batch_sizes=options.batch_sizes,
        warmup=options.warmup,
        iterations=options.iterations,
        keras=options.keras,
    )
    json_path, markdown_path = write_results(options.output or task.output_dir / "benchmark", results, facts)
    print(format_markdown(results, facts))
    print(f"wrote {json_path} and {markdown_path}")
    return 0


def _convert(options: argparse.Namespace) -> int:
    from converters.keras_to_onnx import convert_keras_to_onnx, format_report

    output = options.output or options.model.with_suffix(".onnx")
    report = convert_keras_to_onnx(
        options.model,
        output,
        opset=options.opset,
        atol=options.atol,
        rtol=options.rtol,
        custom_objects=options.custom_objects,
        allow_unsafe_deserialization=options.allow_unsafe_deserialization,
    )
    print(format_report(report))
    return 0


def _show(options: argparse.Namespace) -> int:
    from predict.view.show import show

    show(options.run_dir, split=options.split, rows=options.rows, worst=options.worst)
    return 0


def _report(options: argparse.Namespace) -> int:
    from predict.view.page import write_report

    path = write_report(options.run_dir, split=options.split, output=options.output, samples=options.samples)
    print(f"wrote {path}")
    return 0


def _serve(options: argparse.Namespace) -> int:
    from predict.task import load_config

    task = load_config(options.config, options.overrides)
    engine = Engine(options.engine or task.runtime.engine)
    if engine is Engine.LOCAL and task.serve.replicas > 1:
        raise ConfigError(
            f"serve.replicas: {task.serve.replicas} needs --engine ray (the local server is one process); "
            "remove it or add --engine ray"
        )
    try:
        if engine is Engine.RAY:
            from predict.serve.ray_serve import serve_on_ray as serve
        else:
            from predict.serve.server import serve_task as serve
    except ImportError as error:
        raise ConfigError(
            f"predict serve needs the serve extra ({error.name} is missing): pip install 'predict[serve]'"
        ) from None
    return serve(task, host=options.host, port=options.port)


def _port(text: str) -> int:
    """An argparse type: a TCP port, 0 to 65535."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be 0 to 65535 (got {value})")
    return value


def _count(text: str) -> int:
    """An argparse type: an integer >= 0."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0 (got {value})")
    return value


# The main thread's stages as the summary words them: "inference" is time spent waiting on the model.
_STAGE_NAMES = {"inference": "waiting on the model"}


def format_summary(summary: RunSummary) -> str:
    """The short text printed after a run: rows, speed, provider, metrics, notes and files."""
    stages = ", ".join(
        f"{_STAGE_NAMES.get(name, name)} {seconds:.2f} s" for name, seconds in summary.stage_seconds.items()
    )
    lines = [
        f"{summary.problem_type}, {summary.split} split: {summary.rows} rows scored in {summary.scoring_seconds:.2f} s "
        f"({summary.rows_per_second:.1f} rows/s) on {summary.provider}; {summary.seconds:.2f} s with model loading",
        f"  time: {stages} (model busy {summary.model_seconds:.2f} s on its own thread, alongside)",
    ]
    if summary.metrics:
        lines.append(
            "  metrics: " + "  ".join(f"{name} {value:.4f}" for name, value in sorted(summary.metrics.items()))
        )
    lines.extend(f"  note: {note}" for note in summary.notes)
    lines.append("  files:")
    lines.extend(f"    {path}" for path in summary.files.values())
    return "\n".join(lines)
