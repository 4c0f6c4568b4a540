"""`predict benchmark` on every problem type at realistic sizes, summed up in one table.

For each example config in configs/ (or those named with `--types`; a type is the config's file stem),
a scaled copy of its data is written under `--workdir`, with a config beside it (absolute paths,
`runtime.batch_size: 32`, `output.dir` in the workdir), validated with `load_config`:
- rows: the example's rows repeated to `--rows` (an id column stays unique: copies get `-1`, `-2`, ...);
- dense image tasks (detection, semantic and instance segmentation): each distinct image re-saved at
  4x `preprocessing.image_size` (height x width, its aspect not kept), and its labels scaled with it
  (boxes times the resize factors; RLE masks decoded, resized nearest-neighbour and encoded again, in
  the head's `rle_order`). Scaling was chosen over dropping the label columns: it is a few lines with
  the heads' own RLE helpers, and the run stays what `predict` does on a validation split, metrics
  (COCO mAP, IoU) included, so they count in rows/s as they do for users. (On the examples the
  metrics stay close to the originals'; detection's move most, its letterboxed shapes being stretched.)
- other image tasks keep the example images;
- text_span_prediction: each context extended to 200-400 words with other rows' contexts appended
  after it (the original text stays a prefix, so the answer and its character offset hold; the
  config's windows, `max_length` and `doc_stride`, are unchanged: long contexts make more windows).
  The other biographies hold answers to the same questions, so the tiny model's Jaccard falls (0.97
  to about 0.33 on the examples); with a row's own context repeated instead it stays at 0.97;
- audio tasks: each distinct clip tiled to 10 s and written as WAV at its own sample rate;
- array tasks: `.npy`/`.npz` inputs and labels tiled along the first axis, CSV/Parquet tables repeated.
A Keras `.h5` (`model:`, `head.decoder_model:`) is converted once, with the pipeline's own converter and
cache key, into `WORKDIR/onnx_cache` (kept between runs), and the config points at the `.onnx`: no
TensorFlow starts in the benchmarked processes, nor the Keras fidelity check beside the timed runs.
The Keras baseline is skipped (`keras=False`).

Each type is then benchmarked in a fresh Python process (so that peak RSS is the type's own), one after
the other (`--jobs 1`, the default: no two share the cores):
`predict.benchmark.run_benchmark(batch_sizes=[32], warmup=W, iterations=K)`, with the raw `session.run`
baseline and the bound `rows / ((model + pre-processing + post-processing CPU-seconds, each measured
alone) / usable cores)`.

Usage:
    python scripts/bench_all_types.py [--rows 2048] [--warmup 1] [--iterations 3]
        [--types image_object_detection,text_span_prediction] [--workdir /tmp/predict-bench-all]
        [--output FILE.md] [--jobs 1]
prints one Markdown table (a row per type: rows/s, raw rows/s and the ratio, bound rows/s and the ratio,
the dominant stage, CPU-seconds per stage, peak RSS) under a line of machine facts and the command, and
writes it to FILE.md and FILE.json (default: WORKDIR/bench_all_types.md and .json).
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from predict.benchmark import STAGES
from predict.config import TaskConfig
from predict.enums import ProblemType
from predict.errors import PredictError, one_line
from predict.task import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / "configs"
BATCH_SIZE = 32
DENSE_IMAGE_TYPES = (
    ProblemType.IMAGE_OBJECT_DETECTION,
    ProblemType.IMAGE_SEMANTIC_SEGMENTATION,
    ProblemType.IMAGE_INSTANCE_SEGMENTATION,
)
DENSE_IMAGE_SCALE = 4  # dense tasks read images 4x the model's input, as photos are (the sizes)
CONTEXT_WORDS = (200, 400)  # span prediction: words per context
AUDIO_SECONDS = 10.0
RESULT_FIELDS = (
    "rows",
    "rows_per_second",
    "raw_rows_per_second",
    "ratio_to_raw",
    "bound_rows_per_second",
    "ratio_to_bound",
    "stage_cpu_seconds",
    "dominant_stage",
    "peak_rss_mb",
    "batch_size",
)


def main() -> int:
    """Build the scaled data, benchmark each type in its own process, print and write the table.

    Returns:
        0, or 1 when a type failed (its row says why; the others still ran).
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2048, help="rows per type (default: 2048)")
    parser.add_argument("--types", help="comma-separated config stems (default: every configs/*.yaml)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed runs per type (default: 1)")
    parser.add_argument("--iterations", type=int, default=3, help="timed runs per type, medians (default: 3)")
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/predict-bench-all"))
    parser.add_argument("--output", type=Path, help="the table's .md (and .json beside it); default in the workdir")
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        help="types benchmarked at once (default: 1, so that no two share the cores; more only for a quick "
        "check such as the smoke test: peak RSS stays each type's own, in its own process)",
    )
    parser.add_argument("--one", type=Path, help=argparse.SUPPRESS)  # the child: benchmark one built config
    options = parser.parse_args()
    if options.one is not None:
        print(json.dumps(benchmark_one(options.one, warmup=options.warmup, iterations=options.iterations)))
        return 0
    if options.rows < 1 or options.jobs < 1:
        parser.error(f"--rows and --jobs must be >= 1 (got {options.rows}, {options.jobs})")
    configs = select_configs(options.types)
    workdir = options.workdir.resolve()
    output = (options.output or workdir / "bench_all_types.md").resolve()
    facts = machine_facts(options)

    def build(config: Path) -> Path | dict[str, str]:
        print(f"{config.stem}: building {options.rows} rows", file=sys.stderr, flush=True)
        try:
            return build_task(config, workdir / config.stem, rows=options.rows, onnx_cache=workdir / "onnx_cache")
        except PredictError as error:
            print(f"{config.stem}: {error}", file=sys.stderr)
            return {"error": one_line(error)}

    def benchmark(built: Path | dict[str, str]) -> dict[str, Any]:
        if isinstance(built, dict):
            return built
        print(f"{built.parent.name}: benchmarking", file=sys.stderr, flush=True)
        return run_child(built, warmup=options.warmup, iterations=options.iterations)

    # Building is never timed: its .h5 conversions (a TensorFlow process each) run side by side.
    with ThreadPoolExecutor(max_workers=max(options.jobs, len(os.sched_getaffinity(0)))) as pool:
        built = list(pool.map(build, configs))
    with ThreadPoolExecutor(max_workers=options.jobs) as pool:
        rows = [{"type": config.stem, **result} for config, result in zip(configs, pool.map(benchmark, built))]
    table = format_table(rows, facts)
    print(table, end="")
    output.parent.mkdir(parents=True, exist_ok=True)
    output.with_suffix(".md").write_text(table, encoding="utf-8")
    payload = {"facts": facts, "types": rows}
    output.with_suffix(".json").write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {output.with_suffix('.md')} and {output.with_suffix('.json')}", file=sys.stderr)
    return 1 if any("error" in row for row in rows) else 0


def select_configs(types: str | None) -> list[Path]:
    """The example configs to run: all of configs/*.yaml, or the stems named in `types`.

    Raises:
        SystemExit: a name that is no config's stem (the message lists them).
    """
    configs = sorted(CONFIGS.glob("*.yaml"))
    if not types:
        return configs
    by_stem = {config.stem: config for config in configs}
    names = [name.strip() for name in types.split(",") if name.strip()]
    unknown = [name for name in names if name not in by_stem]
    if unknown:
        raise SystemExit(f"--types: unknown {', '.join(unknown)} (choose from {', '.join(by_stem)})")
    return [by_stem[name] for name in names]


def build_task(config: Path, folder: Path, *, rows: int, onnx_cache: Path) -> Path:
    """Write the scaled data of `config` and its task YAML into `folder` (replaced); validate it.

    Args:
        config: an example config.
        folder: where the data and `task.yaml` go.
        rows: rows to score.
        onnx_cache: where `.h5` models are converted (and found again on the next run).

    Returns:
        The path of the new `task.yaml`.

    Raises:
        ConfigError: the example or the written config does not validate.
        ConversionError: a Keras model could not be converted.
    """
    original = load_config(config)
    raw = yaml.safe_load(config.read_text(encoding="utf-8"))
    absolute_paths(raw, original)
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    data = raw["data"]
    if original.data.dataframe is not None:
        frame = read_table(original.data.dataframe)
        if original.problem_type in DENSE_IMAGE_TYPES:
            frame = rescale_images(frame, original, folder / "images")
            data["data_folder"] = str(folder / "images")
        elif original.problem_type.modality == "audio":
            frame = tile_clips(frame, original, folder / "clips")
            data["data_folder"] = str(folder / "clips")
        elif original.problem_type.modality == "image":  # the example's images, wherever the new dataframe is
            data["data_folder"] = str(source_folder(original))
        frame = repeat_rows(frame, rows, id_columns=id_columns(frame, original))
        if original.problem_type is ProblemType.TEXT_SPAN_PREDICTION:
            frame[original.data.context_column] = long_contexts(frame[original.data.context_column])
        data["dataframe"] = str(write_table(frame, folder / f"data{original.data.dataframe.suffix}"))
    else:  # an array task's seed-style files
        for key in ("inputs", "labels"):
            path = getattr(original.data, key)
            if path is not None:
                target = folder / f"{key}{path.suffix}"
                data[key] = str(tile_file(path, rows, target, id_column=original.data.id_column))
    convert_keras_models(raw, original, onnx_cache)
    raw.setdefault("runtime", {})["batch_size"] = BATCH_SIZE
    raw["output"] = {**(raw.get("output") or {}), "dir": str(folder / "runs")}
    task_path = folder / "task.yaml"
    task_path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    load_config(task_path)
    return task_path


def absolute_paths(raw: dict[str, Any], task: TaskConfig) -> None:
    """Replace, in place, every path the YAML gives (relative to its folder) by the loaded config's absolute one."""
    raw["model"] = str(task.model)
    for section, values in raw.items():
        if not isinstance(values, dict):
            continue
        loaded = getattr(task, section)
        for key in values:
            value = getattr(loaded, key, None)
            if isinstance(value, Path):
                values[key] = str(value)


def convert_keras_models(raw: dict[str, Any], task: TaskConfig, onnx_cache: Path) -> None:
    """Point `model:` and `head.decoder_model:` at ONNX conversions of a Keras `.h5`, made once into `onnx_cache`.

    Raises:
        ConversionError: a conversion failed.
    """
    from predict.model_file import KERAS_SUFFIXES, resolve_onnx_model

    if task.model.suffix.lower() in KERAS_SUFFIXES:
        # The pipeline's own conversion and cache key (the .h5's hash and the load options).
        raw["model"] = str(resolve_onnx_model(task.model, cache_dir=onnx_cache, options=task.model_options).path)
        raw.pop("model_options", None)  # load options of the .h5; the .onnx has none
    decoder = getattr(task.head, "decoder_model", None)
    if decoder is not None and decoder.suffix.lower() in KERAS_SUFFIXES:
        raw["head"]["decoder_model"] = str(resolve_onnx_model(decoder, cache_dir=onnx_cache).path)


def read_table(path: Path) -> pd.DataFrame:
    """A CSV as text (written back unchanged) or a Parquet file as it is."""
    if path.suffix.lower() == ".csv":
        return pd.read_csv(path, dtype=str, keep_default_na=False)
    return pd.read_parquet(path)


def write_table(frame: pd.DataFrame, path: Path) -> Path:
    """Write `frame` as CSV or Parquet, after `path`'s suffix; return `path`."""
    if path.suffix.lower() == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return path


def id_columns(frame: pd.DataFrame, task: TaskConfig) -> list[str]:
    """The columns that name rows and must stay unique: `data.id_column` and an `id` column."""
    return [column for column in dict.fromkeys([task.data.id_column, "id"]) if column in frame.columns]


def repeat_rows(frame: pd.DataFrame, rows: int, *, id_columns: list[str]) -> pd.DataFrame:
    """`frame`'s rows repeated (or cut) to `rows`; copy k of a row gets `-k` after its ids (k >= 1)."""
    copy = np.arange(rows) // len(frame)
    repeated = frame.iloc[np.arange(rows) % len(frame)].reset_index(drop=True)
    suffixes = pd.Series(np.where(copy > 0, np.char.add("-", copy.astype(str)), ""))
    for column in id_columns:
        repeated[column] = repeated[column].astype(str) + suffixes
    return repeated


def source_folder(task: TaskConfig) -> Path:
    """The folder the example's image or audio paths are relative to (`data.data_folder`, default the dataframe's)."""
    return task.data.data_folder or task.data.dataframe.parent


def rescale_images(frame: pd.DataFrame, task: TaskConfig, folder: Path) -> pd.DataFrame:
    """Re-save each image at `DENSE_IMAGE_SCALE` x `preprocessing.image_size` under `folder`, the labels scaled too.

    Boxes (`x_min`, `y_min`, `x_max`, `y_max`, JSON lists) are multiplied by the resize factors; RLE
    masks (`data.label_columns[1]`, JSON lists) are decoded at the old size, resized nearest-neighbour
    and encoded again.

    Returns:
        `frame` with the scaled label columns (image paths are unchanged: relative to `folder` now).
    """
    from PIL import Image

    from predict.heads._masks import decode_rle, encode_rle
    from predict.heads.object_detection import BOX_COLUMNS

    height, width = (DENSE_IMAGE_SCALE * side for side in task.preprocessing.image_size)
    image_column = task.data.image_column
    labels = list(task.data.label_columns)
    mask_column = labels[1] if task.problem_type is not ProblemType.IMAGE_OBJECT_DETECTION and len(labels) > 1 else None
    column_major = getattr(task.head, "rle_order", "column_major") == "column_major"
    sizes = {}
    for name in frame[image_column].unique():
        target = folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        with Image.open(source_folder(task) / name) as image:
            sizes[name] = image.size
            image.resize((width, height), Image.Resampling.BILINEAR).save(target)
    frame = frame.copy()
    for index, name in enumerate(frame[image_column]):
        old_width, old_height = sizes[name]
        for column, factor in zip(BOX_COLUMNS, (width / old_width, height / old_height) * 2, strict=True):
            if column in frame.columns and frame.at[index, column]:
                values = json.loads(frame.at[index, column])
                frame.at[index, column] = json.dumps([round(value * factor, 3) for value in values])
        if mask_column in frame.columns and frame.at[index, mask_column]:
            masks = [
                decode_rle(text, (old_height, old_width), column_major=column_major)
                for text in json.loads(frame.at[index, mask_column])
            ]
            resized = [
                np.asarray(Image.fromarray(mask.astype(np.uint8)).resize((width, height), Image.Resampling.NEAREST))
                for mask in masks
            ]
            frame.at[index, mask_column] = json.dumps([encode_rle(mask, column_major=column_major) for mask in resized])
    return frame


def tile_clips(frame: pd.DataFrame, task: TaskConfig, folder: Path) -> pd.DataFrame:
    """Write each distinct clip tiled to `AUDIO_SECONDS` as WAV (its own sample rate) under `folder`.

    Returns:
        `frame` with the audio column naming the WAV files (relative to `folder`).
    """
    import soundfile

    column = task.data.audio_column
    renamed = {}
    folder.mkdir(parents=True, exist_ok=True)
    for name in frame[column].unique():
        waveform, sample_rate = soundfile.read(source_folder(task) / name, dtype="float32")
        frames = round(AUDIO_SECONDS * sample_rate)
        tiled = np.concatenate([waveform] * math.ceil(frames / len(waveform)))[:frames]
        # clip.flac and clip.ogg would both become clip.wav: the old suffix stays in the name.
        renamed[name] = str(Path(name).with_suffix("")).replace(os.sep, "_") + f"_{Path(name).suffix[1:]}.wav"
        soundfile.write(folder / renamed[name], tiled, sample_rate)
    return frame.assign(**{column: frame[column].map(renamed)})


def long_contexts(contexts: pd.Series) -> pd.Series:
    """Each context followed by other rows' contexts, to 200-400 whitespace words (a seeded length per row).

    The original context stays the text's prefix, so an answer's character offset in it still holds.
    """
    pool = list(dict.fromkeys(contexts))
    position = {text: index for index, text in enumerate(pool)}
    lengths = np.random.default_rng(0).integers(CONTEXT_WORDS[0], CONTEXT_WORDS[1] + 1, size=len(contexts))
    extended = []
    for row, (context, target) in enumerate(zip(contexts, lengths, strict=True)):
        words = len(context.split())
        filler: list[str] = []
        other = position[context] + row  # rows that repeat a context still get different filler
        while words + len(filler) < target:
            other += 1
            filler += pool[other % len(pool)].split()
        extended.append(" ".join([context, *filler[: max(0, target - words)]]))
    return pd.Series(extended, index=contexts.index)


def tile_file(path: Path, rows: int, target: Path, *, id_column: str | None) -> Path:
    """An array task's inputs or labels file tiled along its first axis to `rows`; return `target`."""
    suffix = path.suffix.lower()
    if suffix == ".npy":
        array = np.load(path, mmap_mode="r")
        np.save(target, array[np.arange(rows) % len(array)])
    elif suffix == ".npz":
        with np.load(path) as arrays:
            np.savez(target, **{name: array[np.arange(rows) % len(array)] for name, array in arrays.items()})
    else:
        frame = read_table(path)
        write_table(repeat_rows(frame, rows, id_columns=[id_column] if id_column in frame.columns else []), target)
    return target


def run_child(task_path: Path, *, warmup: int, iterations: int) -> dict[str, Any]:
    """Benchmark one built config in a fresh process; its results, or `{"error": last stderr line}`."""
    command = [
        sys.executable, __file__, "--one", str(task_path), "--warmup", str(warmup), "--iterations", str(iterations),
    ]  # fmt: skip
    completed = subprocess.run(command, capture_output=True, text=True, check=False, cwd=ROOT)
    if completed.returncode != 0:
        lines = [line for line in completed.stderr.splitlines() if line.strip()] or [f"exit {completed.returncode}"]
        print(completed.stderr, file=sys.stderr)
        return {"error": lines[-1]}
    return json.loads(completed.stdout.strip().splitlines()[-1])


def benchmark_one(task_path: Path, *, warmup: int, iterations: int) -> dict[str, Any]:
    """Run `predict.benchmark.run_benchmark` on one config at `BATCH_SIZE`, without the Keras baseline.

    Raises:
        ConfigError: the config does not validate, or the benchmark's settings are out of range.
    """
    from predict.benchmark import run_benchmark

    task = load_config(task_path)
    results, facts = run_benchmark(task, batch_sizes=[BATCH_SIZE], warmup=warmup, iterations=iterations, keras=False)
    (result,) = results
    measured = result.as_dict()
    return {"provider": facts["provider"], **{name: measured[name] for name in RESULT_FIELDS}}


def machine_facts(options: argparse.Namespace) -> dict[str, Any]:
    """Cores this process may use, the CPU, onnxruntime's version, the date and the command line."""
    cpu = platform.processor()
    if Path("/proc/cpuinfo").is_file():
        models = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")]  # fmt: skip
        cpu = models[0] if models else cpu
    return {
        "cores": len(os.sched_getaffinity(0)),
        "cpu": cpu or "unknown",
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "python": platform.python_version(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "command": shlex.join(["python", *sys.argv]),
        "rows": options.rows,
        "warmup": options.warmup,
        "iterations": options.iterations,
        "batch_size": BATCH_SIZE,
    }


def format_table(rows: list[dict[str, Any]], facts: dict[str, Any]) -> str:
    """The Markdown table, a row per type, under a line of machine facts and the command."""
    lines = [
        f"{facts['cores']} usable cores ({facts['cpu']}), onnxruntime {facts['onnxruntime']}, Python "
        f"{facts['python']}, {facts['date']}; batch size {facts['batch_size']}, medians of {facts['iterations']} "
        f"runs after {facts['warmup']} warm-up",
        "",
        f"`{facts['command']}`",
        "",
        "| type | rows | rows/s | raw rows/s | ratio to raw | bound rows/s | ratio to bound | dominant stage "
        "| CPU s pre / model / post | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        if "error" in row:
            lines.append(f"| {row['type']} | failed: {row['error'].replace('|', '/')} |" + " |" * 8)
            continue
        cpu = " / ".join(f"{row['stage_cpu_seconds'][stage]:.3g}" for stage in STAGES)
        lines.append(
            f"| {row['type']} | {row['rows']} | {row['rows_per_second']:.1f} | {row['raw_rows_per_second']:.1f} "
            f"| {row['ratio_to_raw']:.2f}x | {row['bound_rows_per_second']:.1f} | {row['ratio_to_bound']:.2f}x "
            f"| {row['dominant_stage']} | {cpu} | {row['peak_rss_mb']:.0f} |"
        )
    providers = sorted({row["provider"] for row in rows if "provider" in row})
    lines += ["", f"Provider: {', '.join(providers) or 'none'}."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    try:
        sys.exit(main())
    except PredictError as error:
        raise SystemExit(f"error: {error}") from None
