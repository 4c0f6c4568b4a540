"""Shared steps of the export tests: run the pipeline, export, and run the exported graph on the loader's rows."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import onnx
import onnxruntime

from predict.cli import main
from predict.export.exporter import FRONT_ENDS
from predict.plan import build_plan, read_rows, resolve_model
from predict.task import load_config

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs"


def run_pipeline(config: Path, output_dir: Path, *overrides: str) -> dict:
    """`predict --config` into `output_dir`; the pkl it wrote."""
    sets = [item for override in overrides for item in ("--set", override)]
    assert main(["--config", str(config), "--quiet", "--set", f"output.dir={output_dir}", *sets]) == 0
    with (output_dir / "validation_raw_predictions.pkl").open("rb") as handle:
        return pickle.load(handle)


def export(config: Path, output_dir: Path, target: Path, *overrides: str, extra: tuple[str, ...] = ()) -> Path:
    """`predict export --config ... -o target` (the same output.dir, so a converted .h5 is reused)."""
    sets = [item for override in overrides for item in ("--set", override)]
    arguments = ["export", "--config", str(config), "-o", str(target), "--set", f"output.dir={output_dir}", *sets]
    assert main([*arguments, *extra]) == 0
    assert target.is_file()
    return target


def graph_batches(config: Path, output_dir: Path, graph: Path, *overrides: str) -> list[tuple]:
    """The exported graph run by onnxruntime over every batch of the task's loader, fed what the loader
    decodes (images: resized uint8 pixels before normalisation; text: token ids; audio: waveform chunks;
    arrays: the rows): (the loader's batch, the graph's outputs) per batch."""
    task = load_config(config, [f"output.dir={output_dir}", *overrides])
    task, dataframe = read_rows(task)
    plan = build_plan(task, dataframe, resolve_model(task, output_dir=output_dir), output_dir=output_dir)
    front_end = FRONT_ENDS[plan.spec.modality.name].for_task(plan.task, plan.runner.inputs)
    session = onnxruntime.InferenceSession(str(graph), providers=["CPUExecutionProvider"])
    names = [value.name for value in session.get_inputs()]
    output_names = [value.name for value in session.get_outputs()]
    dataset = plan.dataset()
    found = []
    for index in range(len(dataset)):
        batch, feeds = front_end.feeds(dataset, index)
        found.append((batch, dict(zip(output_names, session.run(None, {name: feeds[name] for name in names})))))
    return found


def graph_outputs(config: Path, output_dir: Path, graph: Path, *overrides: str) -> dict[str, np.ndarray]:
    """`graph_batches`' outputs concatenated over the batches."""
    pieces = [outputs for _, outputs in graph_batches(config, output_dir, graph, *overrides)]
    return {name: np.concatenate([piece[name] for piece in pieces]) for name in pieces[0]}


def metadata(graph: Path) -> dict[str, str]:
    model = onnx.load(str(graph))
    return {entry.key: entry.value for entry in model.metadata_props}


def op_domains(graph: Path) -> set[str]:
    """Every op domain the graph uses (plain ONNX: only '')."""
    model = onnx.load(str(graph))
    return {node.domain for node in model.graph.node}
