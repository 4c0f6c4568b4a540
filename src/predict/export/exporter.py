"""`predict export`: the task's model with its pre- and post-processing as one ONNX file, checked on the task's rows.

read rows -> plan (model, head: predict.plan) -> graph: front end (predict.export.inputs) + the
model (predict.export.graph) + the head's post-processing (predict.export.outputs, .detection)
-> pipeline and graph on the same rows (predict.export.parity): refuse on disagreement
-> fp16 / int8 and their speed (predict.export.precision) -> metadata -> the file, atomically
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

import onnx

import predict
from predict.config import TaskConfig
from predict.enums import Backend, Device, Engine, Precision
from predict.errors import ConfigError, ConversionError
from predict.export.agreement import Agreement
from predict.export.audio import AudioFrontEnd
from predict.export.detection import DetectionExport
from predict.export.graph import MIN_OPSET, GraphBuilder, default_opset, prefixed, read_model
from predict.export.inputs import ArrayFrontEnd, ImageFrontEnd, TextFrontEnd
from predict.export.outputs import (
    ClassificationExport,
    MetricLearningExport,
    RegressionExport,
    SemanticSegmentationExport,
    TokenClassificationExport,
)
from predict.export.parity import ScoredRows, graph_session, readable_only, run_graph, score_rows
from predict.export.precision import ExportPrecision, rows_per_second, to_float16, to_int8
from predict.heads.classification import ClassificationHead
from predict.heads.metric_learning import MetricLearningHead
from predict.heads.object_detection import ObjectDetectionHead
from predict.heads.regression import RegressionHead
from predict.heads.semantic_segmentation import SemanticSegmentationHead
from predict.heads.token_classification import TokenClassificationHead
from predict.model_file import KERAS_SUFFIXES, file_sha256
from predict.plan import Plan, build_plan, read_rows, resolve_model
from predict.problems import PROBLEMS
from predict.writers._atomic import atomic_path

DEFAULT_ATOL = 1e-4  # fp32 graph vs pipeline: the same network, so only op-order rounding may differ

FRONT_ENDS = {"image": ImageFrontEnd, "array": ArrayFrontEnd, "text": TextFrontEnd, "audio": AudioFrontEnd}
HEAD_EXPORTS = {
    ClassificationHead: ClassificationExport,
    RegressionHead: RegressionExport,
    MetricLearningHead: MetricLearningExport,
    ObjectDetectionHead: DetectionExport,
    SemanticSegmentationHead: SemanticSegmentationExport,
    TokenClassificationHead: TokenClassificationExport,
}


@dataclass(frozen=True, kw_only=True)
class ExportReport:
    """What `export_task` wrote and measured.

    Attributes:
        path: the ONNX file written.
        precision: the arithmetic of its network.
        rows: rows compared with the pipeline.
        parity: the fp32 graph against the pipeline (within tolerance, or nothing is written).
        precision_parity: the fp16 / int8 graph against the pipeline (not gating), or None for fp32.
        speed: rows/s of the plain model (`model`), the fp32 graph and the written graph; fp16 / int8 only.
        metadata: the file's metadata_props.
        notes: what a user should know (rows fewer than asked, calibration rows).
    """

    path: Path
    precision: ExportPrecision
    rows: int
    parity: Agreement
    precision_parity: Agreement | None
    speed: dict[str, float]
    metadata: dict[str, str]
    notes: list[str] = field(default_factory=list)


def export_task(
    task: TaskConfig,
    output: Path,
    *,
    precision: ExportPrecision = ExportPrecision.FP32,
    rows: int | None = None,
    calibration_rows: int = 128,
    atol: float = DEFAULT_ATOL,
) -> ExportReport:
    """Write `output`: the task's model with its pre- and post-processing, after checking it against the pipeline.

    Args:
        task: a validated config from `load_config`.
        output: the ONNX file to write.
        precision: fp32 (default), fp16 or int8 for the network.
        rows: compare on the first `rows` rows (default: all).
        calibration_rows: int8: calibrate on the first rows, at most `rows`.
        atol: the fp32 graph's largest allowed difference from the pipeline's values.

    Raises:
        ConfigError: the task cannot be exported (backend, problem type, model layout).
        ConversionError: the fp32 graph disagrees with the pipeline; nothing is written.
    """
    task, dataframe = read_rows(_for_export(task))
    model = resolve_model(task, output_dir=task.output_dir)
    plan = build_plan(task, dataframe, model, output_dir=task.output_dir)
    front_end, head_export = _parts(plan)
    network = read_model(model.path)
    graph = compose(network, front_end, head_export)
    count = len(dataframe) if rows is None else min(rows, len(dataframe))
    if count < 1:
        raise ConfigError("export compares the graph with the pipeline on the task's rows: --rows must be >= 1")
    scored = score_rows(plan, front_end, count)
    parity = _compare(head_export, graph_session(graph.SerializeToString()), scored, atol=atol)
    if parity.problems:
        raise ConversionError(
            f"the exported graph disagrees with the pipeline on {scored.rows} rows; nothing was written:\n"
            + "\n".join(parity.problems)
        )
    notes: list[str] = []
    written, precision_parity, speed = graph, None, {}
    if precision is not ExportPrecision.FP32:
        lowered = _lower(network, precision, scored, calibration_rows, notes)
        written = compose(lowered, front_end, head_export)
        precision_parity, speed = _measure(plan, head_export, scored, graph, written, precision)
    metadata = _metadata(plan, front_end, head_export, written, precision, parity, scored.rows)
    onnx.helper.set_model_props(written, metadata)
    with atomic_path(output) as temporary:
        onnx.save(written, str(temporary))
    return ExportReport(
        path=output,
        precision=precision,
        rows=scored.rows,
        parity=parity,
        precision_parity=precision_parity,
        speed=speed,
        metadata=metadata,
        notes=notes,
    )


def _for_export(task: TaskConfig) -> TaskConfig:
    """The task as export runs it: onnxruntime on the CPU in float32, batches decoded in this process.

    Raises:
        ConfigError: the model is not an ONNX or Keras file.
    """
    suffix = task.model.suffix.lower()
    if suffix != ".onnx" and suffix not in KERAS_SUFFIXES:
        raise ConfigError(
            f"model {task.model.name}: export takes an ONNX or Keras (.h5) model (got '{suffix}'); "
            "export a PyTorch model to ONNX first (torch.onnx.export)"
        )
    runtime = dataclasses.replace(
        task.runtime, backend=Backend.ONNXRUNTIME, device=Device.CPU, precision=Precision.FP32, engine=Engine.LOCAL
    )
    return dataclasses.replace(task, runtime=runtime)


def _parts(plan: Plan):
    """The plan's front end (by modality) and head export (by head class).

    Raises:
        ConfigError: the problem type has no export yet.
    """
    head_export = HEAD_EXPORTS.get(type(plan.head))
    front_end = FRONT_ENDS.get(plan.spec.modality.name)
    if head_export is None or front_end is None:
        supported = sorted(
            str(problem)
            for problem, spec in PROBLEMS.items()
            if spec.head in HEAD_EXPORTS and spec.modality.name in FRONT_ENDS
        )
        raise ConfigError(
            f"problem_type: {plan.task.problem_type} cannot be exported yet (exported: {', '.join(supported)})"
        )
    fixed = [spec.name for spec in plan.runner.inputs if spec.fixed_batch_size]
    if fixed:
        raise ConfigError(
            f"model {plan.task.model.name}: input '{fixed[0]}' has a fixed batch size of "
            f"{plan.runner.inputs[0].fixed_batch_size}; export needs a dynamic batch axis (torch.onnx.export "
            "dynamic_axes, or tf2onnx with a None batch dimension)"
        )
    front = front_end.for_task(plan.task, plan.runner.inputs)
    outputs = {spec.name: spec for spec in plan.runner.outputs}
    if head_export is DetectionExport:
        return front, DetectionExport(plan.head, outputs, (front.image.height, front.image.width))
    return front, head_export(plan.head, outputs)


def _compare(head_export, session, scored: ScoredRows, *, atol: float) -> Agreement:
    graph_outputs = readable_only(run_graph(session, scored, head_export), scored.readable)
    return head_export.compare(graph_outputs, readable_only(scored.predictions, scored.readable), atol=atol)


def compose(network: onnx.ModelProto, front_end, head_export) -> onnx.ModelProto:
    """The exported graph: the front end's inputs and pre-processing, the network, the head's post-processing."""
    builder = GraphBuilder(prefixed(network))
    front_end.add(builder)
    builder.mark_model()
    front_end.after_model(builder)
    return builder.build(head_export.add(builder))


def _lower(
    network: onnx.ModelProto, precision: ExportPrecision, scored: ScoredRows, calibration_rows: int, notes: list[str]
) -> onnx.ModelProto:
    """The network in fp16, or in int8 calibrated on the model inputs of the first `calibration_rows` rows."""
    if precision is ExportPrecision.FP16:
        return to_float16(network)
    calibration, covered = [], 0
    for batch in scored.batches:
        if covered >= calibration_rows:
            break
        calibration.append(batch.inputs)
        covered += len(batch.row_ids)
    notes.append(f"int8 calibrated on the model inputs of {min(covered, scored.rows)} rows (MinMax, static QDQ)")
    return to_int8(network, calibration)


def _measure(
    plan: Plan, head_export, scored: ScoredRows, graph: onnx.ModelProto, lowered: onnx.ModelProto, precision
) -> tuple[Agreement, dict[str, float]]:
    """The lowered graph's agreement with the pipeline (not gating: the user weighs it against the
    speed-up), and rows/s of the plain model, the fp32 graph and the lowered graph on the same rows."""
    session = graph_session(lowered.SerializeToString())
    agreement = _compare(head_export, session, scored, atol=0.0)
    agreement.problems.clear()
    model_session = graph_session(str(plan.model.path))
    fp32_session = graph_session(graph.SerializeToString())
    inputs = [value.name for value in session.get_inputs()]
    graph_feeds = [{name: feeds[name] for name in inputs} for feeds in scored.feeds]
    model_feeds = [batch.inputs for batch in scored.batches]
    speed = rows_per_second(
        {
            "model": (lambda feeds: model_session.run(None, feeds), model_feeds),
            "fp32": (lambda feeds: fp32_session.run(None, feeds), graph_feeds),
            str(precision): (lambda feeds: session.run(None, feeds), graph_feeds),
        }
    )
    return agreement, speed


def _metadata(
    plan: Plan, front_end, head_export, graph: onnx.ModelProto, precision: ExportPrecision, parity: Agreement, rows: int
) -> dict[str, str]:
    """metadata_props: what a program in any language needs to feed the graph and read its outputs."""
    task = plan.task
    shapes = {value.name: _describe(value) for value in (*graph.graph.input, *graph.graph.output)}
    names = {value.name for value in graph.graph.input}
    return {
        "problem_type": str(task.problem_type),
        "predict_version": predict.__version__,
        "source_model": task.model.name,
        "source_model_sha256": file_sha256(task.model),
        "precision": str(precision),
        "opset": str(max(default_opset(graph), MIN_OPSET)),
        "label_columns": json.dumps(list(task.data.label_columns)),
        "inputs": json.dumps({name: shape for name, shape in shapes.items() if name in names}),
        "outputs": json.dumps({name: shape for name, shape in shapes.items() if name not in names}),
        **front_end.metadata(),
        **head_export.metadata(),
        "outside_graph": json.dumps([*front_end.outside(), *head_export.outside()]),
        "parity": json.dumps({"rows": rows, **parity.figures}),
    }


def _describe(value: onnx.ValueInfoProto) -> str:
    """`uint8[batch, 32, 32, 3]`: a graph input's or output's element type and shape."""
    tensor = value.type.tensor_type
    kind = onnx.helper.tensor_dtype_to_string(tensor.elem_type).removeprefix("TensorProto.").lower()
    kind = {"float": "float32", "double": "float64"}.get(kind, kind)
    return f"{kind}[{', '.join(dim.dim_param or str(dim.dim_value) for dim in tensor.shape.dim)}]"


def format_report(report: ExportReport) -> str:
    """The lines `predict export` prints: the file, its inputs and outputs, agreement, speed, what stays outside."""
    metadata = report.metadata
    size = report.path.stat().st_size / 1024
    lines = [f"wrote {report.path} ({report.precision}, {size:.0f} KB), {metadata['problem_type']}"]
    lines.append("  inputs: " + ", ".join(f"{k} {v}" for k, v in json.loads(metadata["inputs"]).items()))
    lines.append("  outputs: " + ", ".join(f"{k} {v}" for k, v in json.loads(metadata["outputs"]).items()))
    lines.append(f"  fp32 graph vs pipeline on {report.rows} rows: {_figures(report.parity)}")
    if report.precision_parity is not None:
        lines.append(f"  {report.precision} graph vs pipeline: {_figures(report.precision_parity)}")
        speed = report.speed
        lines.append(
            f"  rows/s on this CPU: plain model {speed['model']:.0f}, fp32 graph {speed['fp32']:.0f}, "
            f"{report.precision} graph {speed[str(report.precision)]:.0f} "
            f"({speed[str(report.precision)] / speed['fp32']:.2f}x the fp32 graph)"
        )
    lines.extend(f"  outside the graph: {item}" for item in json.loads(metadata["outside_graph"]))
    lines.extend(f"  note: {note}" for note in report.notes)
    return "\n".join(lines)


def _figures(agreement: Agreement) -> str:
    return ", ".join(
        f"{name} {value:.3g}" if "diff" in name else f"{name} {value:.4f}" for name, value in agreement.figures.items()
    )
