"""Cold start (issue 18): each subcommand imports only what its task needs.

Every command runs as users run it, `python -m predict ...` in a fresh process, under
`python -X importtime`, which lists every module the process imported; a module the task does not
need fails the test. torch and scikit-learn took 2-4 s each to import on the 2-core development VM,
for a run that scores in 0.03 s (docs/performance.md, "The whole command").
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Model runtimes: never imported by `predict show` / `predict report`. (The CLI's parser imports
# converters.keras_to_onnx for its shared options: standard library only, no TensorFlow or onnx.)
RUNTIMES = ("onnxruntime", "onnx", "torch", "tensorflow", "keras", "tf2onnx")
# Not needed by an onnxruntime run on the CPU, decoding in its own process or in worker processes.
# scikit-learn computes the metrics of a labelled split (imported by a forked helper process from the start
# of the command, `predict.report.helper_process`); a split without labels never imports it
# (test_a_split_without_labels_imports_no_sklearn).
NOT_FOR_ONNXRUNTIME = ("torch", "tensorflow", "keras", "tf2onnx", "matplotlib", "ray")
# An image run needs no audio or text code (audio features import torch; text imports tokenizers).
NOT_FOR_IMAGES = ("predict.data.audio", "predict.data.text", "soundfile", "soxr", "tokenizers", "transformers")
# The same run on any machine: decoding in the main process, on the CPU (on more CPUs the default is
# worker processes; with CUDA, torch's DataLoader page-locks the batches).
LOCAL_CPU = ("--set", "runtime.num_workers=0", "--set", "runtime.device=cpu")


def imported(*arguments: str) -> tuple[set[str], str]:
    """The modules `python -X importtime -m predict ARGUMENTS` imported, and its stdout."""
    completed = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "predict", *arguments], capture_output=True, text=True, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    modules = set()
    for line in completed.stderr.splitlines():
        if line.startswith("import time:") and not line.endswith("imported package"):
            modules.add(line.rsplit("|", 1)[1].strip())
    assert "predict.cli" in modules  # the listing was read: an empty one would pass every check below
    return modules, completed.stdout


def offending(modules: set[str], forbidden: tuple[str, ...]) -> list[str]:
    """The forbidden packages among `modules` (a package counts with any of its submodules)."""
    return sorted({name for name in forbidden for module in modules if module == name or module.startswith(name + ".")})


@pytest.fixture(scope="module")
def image_run(tmp_path_factory) -> tuple[Path, list[tuple[set[str], str]]]:
    """configs/image_classification.yaml (a Keras .h5) run twice: converted, then from the cache."""
    out = tmp_path_factory.mktemp("image_run")
    config = str(ROOT / "configs" / "image_classification.yaml")
    runs = [imported("--config", config, "--set", f"output.dir={out}", *LOCAL_CPU, "--overwrite") for _ in range(2)]
    return out, runs


def test_an_onnxruntime_image_run_imports_no_torch_sklearn_or_tensorflow(image_run):
    _, runs = image_run
    for modules, _ in runs:
        assert "onnxruntime" in modules and "predict.data.image" in modules
        assert offending(modules, NOT_FOR_ONNXRUNTIME + NOT_FOR_IMAGES) == []
    # The second run found the .h5's conversion cached by content hash: no converter ran at all.
    assert "converted to" in runs[0][1] and "using the cached conversion" in runs[1][1]


def test_decoding_worker_processes_import_no_torch(tmp_path):
    config = str(ROOT / "configs" / "image_regression.yaml")
    modules, _ = imported(
        "--config",
        config,
        "--set",
        f"output.dir={tmp_path}",
        "--set",
        "runtime.num_workers=2",
        "--set",
        "runtime.device=cpu",
        "--quiet",
    )
    assert "predict.data.workers" in modules  # the workers ran: an in-process run would pass the check below
    assert offending(modules, NOT_FOR_ONNXRUNTIME) == []


@pytest.mark.parametrize("config", ["image_regression.yaml", "text_regression.yaml", "image_metric_learning.yaml"])
def test_other_onnxruntime_runs_import_no_torch_or_sklearn(tmp_path, config):
    modules, _ = imported(
        "--config", str(ROOT / "configs" / config), "--set", f"output.dir={tmp_path}", *LOCAL_CPU, "--quiet"
    )
    assert offending(modules, NOT_FOR_ONNXRUNTIME + ("predict.data.audio",)) == []


@pytest.mark.parametrize(
    "config",
    [
        "text_token_classification.yaml",
        "text_span_prediction.yaml",
        "text_sequence_to_sequence.yaml",
        "image_object_detection.yaml",
        "image_instance_segmentation.yaml",
        "image_metric_learning.yaml",
    ],
)
def test_labelled_runs_whose_metrics_are_not_scikit_learns_import_no_sklearn(tmp_path, config):
    # Entity F1, Jaccard, BLEU, COCO mAP and retrieval mAP: scikit-learn's import would be 1.3-3 CPU-s for nothing.
    modules, _ = imported(
        "--config", str(ROOT / "configs" / config), "--set", f"output.dir={tmp_path}", *LOCAL_CPU, "--quiet"
    )
    assert (tmp_path / "validation_metrics.json").is_file()  # labelled: metrics were computed
    assert offending(modules, ("sklearn", "tensorflow")) == []


def test_a_split_without_labels_imports_no_sklearn(tmp_path):
    config = str(ROOT / "configs" / "image_classification.yaml")
    test_split = ("--set", "data.split=test", "--set", "data.dataframe=data/shapes/test.csv")
    modules, _ = imported("--config", config, "--set", f"output.dir={tmp_path}", *LOCAL_CPU, *test_split, "--quiet")
    assert offending(modules, NOT_FOR_ONNXRUNTIME + ("sklearn", "scipy")) == []


def test_show_imports_no_model_runtime_and_no_plotting(image_run):
    out, _ = image_run
    modules, stdout = imported("show", str(out))
    assert "Accuracy" in stdout
    assert offending(modules, RUNTIMES + ("sklearn", "scipy", "matplotlib")) == []


def test_report_imports_no_model_runtime(image_run):
    out, _ = image_run
    modules, _ = imported("report", str(out))
    assert "matplotlib" in modules  # it drew its plots
    assert offending(modules, RUNTIMES) == []
