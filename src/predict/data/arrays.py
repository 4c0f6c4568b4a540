"""Numeric arrays and tables in: feature columns of a dataframe, or seed-style `X_test.npy` / `y_test.npy`.

Two forms (FORMATS.md "Arrays and tables"):
- `data.dataframe` + `data.feature_columns`: the dataframe is the rows' table, as for every other
  problem type; its feature columns (default: all but the labels and the id column) are the input.
- `data.inputs` + optional `data.labels`: `.npy` (memory-mapped, so a 10 GB array streams in
  batches), `.npz` (one array per model input, by input name) or a CSV/Parquet of features (an
  unnamed first column is its index, as `pd.read_csv(..., index_col=0)` reads it). The rows' table
  is built here: the index column (`row` = 0..n-1, or the CSV index by its name), then the label
  columns (`label` for 1-D labels, `label_{j}` for (n, k) values, a labels CSV's own names).

The model's inputs drive shape and dtype: `(N, F)` tables, `(N, T, F)` windows, several inputs. Item
i of `ArrayBatches` is batch i; a row with NaN, inf or a cell that is not a number is a row error
(stop, or left out with `data.on_error: skip`).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from predict.config import TaskConfig
from predict.data.collate import Batch, BatchDataset
from predict.data.dataframe import read_dataframe
from predict.enums import ROW_COLUMN, ProblemType
from predict.errors import ConfigError, InputError, one_line
from predict.runners.base import TensorSpec, format_shape

_UNNAMED = ("", "Unnamed: 0")  # what pandas calls a CSV's header-less first column


# --- The rows' table -------------------------------------------------------------------------------


def read_array_rows(task: TaskConfig) -> tuple[TaskConfig, pd.DataFrame]:
    """The rows' table of an array task, and the task with its id and label columns as the files name them.

    Raises:
        InputError: a file cannot be read, or inputs and labels disagree on the number or index of rows.
    """
    data = task.data
    if data.dataframe is not None:
        return task, read_dataframe(data.dataframe)
    index_name, index = _inputs_index(data.inputs, data.id_column)
    frame = pd.DataFrame({index_name: index})
    label_columns = data.label_columns
    if data.labels is not None:
        labels = _read_labels(task, rows=len(index), index=index)
        label_columns = tuple(labels.columns)
        frame = pd.concat([frame, labels.reset_index(drop=True)], axis=1)
    resolved = dataclasses.replace(data, id_column=index_name, label_columns=label_columns)
    return dataclasses.replace(task, data=resolved), frame


def name_unlabelled_outputs(task: TaskConfig, outputs: tuple[TensorSpec, ...]) -> TaskConfig:
    """Seed-style inputs without labels (a test split): label columns named after the model's output.

    Regression: `label` for one value per row, `label_{j}` for several; classification: `label`.
    """
    if task.problem_type.modality != "array" or task.data.label_columns:
        return task
    from predict.heads.base import output_width, select_output

    spec = select_output(outputs, task.head.output_name, model_name=task.model.name)
    width = output_width(spec, model_name=task.model.name) or 1
    regression = task.problem_type is ProblemType.ARRAY_REGRESSION
    columns = tuple(f"label_{j}" for j in range(width)) if regression and width > 1 else ("label",)
    return dataclasses.replace(task, data=dataclasses.replace(task.data, label_columns=columns))


def _inputs_index(path: Path, id_column: str | None) -> tuple[str, np.ndarray]:
    """The name and values of the column that names the rows of `data.inputs`."""
    suffix = path.suffix.lower()
    if suffix in (".npy", ".npz"):
        rows = {len(array) for array in _open_arrays(path).values()}
        if len(rows) != 1:
            raise InputError(f"data.inputs {path.name}: its arrays have different numbers of rows ({sorted(rows)})")
        return ROW_COLUMN, np.arange(rows.pop())
    table = _read_table(path, "inputs", index_column=id_column, index_only=True)
    return table.index.name or ROW_COLUMN, table.index.to_numpy()


def _read_labels(task: TaskConfig, *, rows: int, index: np.ndarray) -> pd.DataFrame:
    """`data.labels` as label columns, one row per input row."""
    path, configured = task.data.labels, task.data.label_columns
    if path.suffix.lower() != ".npy":
        table = _read_table(path, "labels", index_column=None)
        if table.index.name is not None and len(table) == rows and not np.array_equal(table.index.to_numpy(), index):
            raise InputError(
                f"data.labels {path.name}: its index does not match data.inputs {task.data.inputs.name}'s, row by row"
            )
        if configured:
            missing = [name for name in configured if name not in table.columns]
            if missing:
                raise InputError(
                    f"data.labels {path.name} has no column(s) {', '.join(missing)} (columns: "
                    f"{', '.join(table.columns)})"
                )
            table = table[list(configured)]
        labels = table
    else:
        labels = _labels_from_array(task, np.load(path, allow_pickle=False))
    if len(labels) != rows:
        raise InputError(
            f"data.labels {path.name} has {len(labels)} rows but data.inputs {task.data.inputs.name} has {rows}; "
            "they must be aligned row by row"
        )
    return labels


def _labels_from_array(task: TaskConfig, values: np.ndarray) -> pd.DataFrame:
    """A labels array as columns: (n,) one column; (n, k) k columns (one-hot classes, or k values)."""
    path, configured = task.data.labels, task.data.label_columns
    if values.ndim == 2 and values.shape[1] == 1:
        values = values[:, 0]
    if values.ndim not in (1, 2):
        raise InputError(f"data.labels {path.name}: expected shape (n,) or (n, k), got {values.shape}")
    width = 1 if values.ndim == 1 else values.shape[1]
    if configured and len(configured) != width:
        raise InputError(
            f"data.labels {path.name} has {width} column(s) per row but data.label_columns names {len(configured)}"
        )
    if values.dtype.kind == "f" and np.all(np.mod(values, 1) == 0):
        values = values.astype(np.int64)  # ids or one-hot rows saved as floats: 2.0 is class 2, written 0/1
    class_names = getattr(task.head, "class_names", ())
    if values.ndim == 1:
        if class_names and _are_class_ids(values, len(class_names)):
            values = np.asarray(class_names, dtype=object)[values]
        return pd.DataFrame({configured[0] if configured else "label": values})
    if not configured:
        names = class_names if len(class_names) == width else range(width)
        configured = tuple(f"label_{name}" for name in names)
    return pd.DataFrame(values, columns=list(configured))


def _are_class_ids(values: np.ndarray, classes: int) -> bool:
    return values.dtype.kind in "iu" and bool(values.min() >= 0 and values.max() < classes)


def _read_table(path: Path, key: str, *, index_column: str | None, index_only: bool = False) -> pd.DataFrame:
    """A CSV or Parquet table with its index: `index_column`, else an unnamed first column (named
    `row`, or `index_column` when that names it), else none. `index_only`: read no other column."""
    try:
        columns = _table_columns(path)
        index = index_column if index_column in columns else columns[0] if columns and columns[0] in _UNNAMED else None
        if index_column is not None and index is None:
            raise InputError(
                f"data.id_column: column '{index_column}' is not in {path.name} (columns: {', '.join(columns)})"
            )
        wanted = [index] if index_only and index is not None else None
        if path.suffix.lower() == ".csv":
            table = pd.read_csv(path, encoding="utf-8", usecols=wanted)
        else:
            table = pd.read_parquet(path, columns=wanted)
    except (ValueError, OSError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise InputError(f"data.{key} {path}: cannot be read as a table: {one_line(error)}") from None
    if len(table) == 0:
        raise InputError(f"data.{key} {path}: the table has no rows")
    if index is not None:
        table = table.set_index(index)
        table.index.name = index_column or ROW_COLUMN
    return table


def _table_columns(path: Path) -> list[str]:
    if path.suffix.lower() == ".csv":
        return [str(name) for name in pd.read_csv(path, nrows=0, encoding="utf-8").columns]
    import pyarrow.parquet

    return list(pyarrow.parquet.read_schema(path).names)


# --- Model inputs ----------------------------------------------------------------------------------


@dataclass
class ArraySource:
    """The values of one model input for every row: an array in memory, or a `.npy` file read batch by batch.

    A `.npy` is opened as a memory map (its shape, dtype and data offset; nothing is read), and each
    batch's rows are read with one plain read: pages of a memory map that were read count in the
    process's resident memory, plain reads leave them in the page cache only, so memory stays flat
    however large the file. The map is reopened, not pickled, when the dataset crosses to a worker
    process or to Ray.
    """

    name: str  # the model input
    described: str  # for messages: `X_test.npy`, `valid.csv feature columns`
    path: Path | None = None  # .npy
    array: np.ndarray | None = None

    def values(self) -> np.ndarray:
        """Every row: the array in memory, or the `.npy`'s memory map (for its shape and dtype)."""
        if self.array is None:
            self.array = np.load(self.path, mmap_mode="r", allow_pickle=False)
        return self.array

    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows `start:stop` as a new array (read from the file for a `.npy`)."""
        values = self.values()
        if not isinstance(values, np.memmap) or not values.flags.c_contiguous:
            return np.array(values[start:stop])
        rows = np.empty((stop - start, *values.shape[1:]), dtype=values.dtype)
        with open(self.path, "rb") as handle:
            handle.seek(values.offset + start * (values.nbytes // max(len(values), 1)))
            if handle.readinto(memoryview(rows).cast("B")) != rows.nbytes:
                raise InputError(f"data.inputs {self.path}: the file ends before row {stop - 1}; was it truncated?")
        return rows

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        if self.path is not None:
            state["array"] = None
        return state


class ArrayBatches:
    """Item i is batch i: the rows' values of every model input, in the model's dtype and shape."""

    def __init__(
        self,
        sources: list[ArraySource],
        specs: dict[str, TensorSpec],
        *,
        rows: int,
        batch_size: int,
        row_problems: dict[int, str],
    ) -> None:
        self.sources = sources
        self.specs = specs
        self.rows = rows
        self.batch_size = batch_size
        self.row_problems = row_problems  # table cells that are not numbers, found when the table was read

    def __len__(self) -> int:
        return -(-self.rows // self.batch_size)

    def with_rows(self, dataframe: pd.DataFrame) -> ArrayBatches:
        """This loader over other rows: one column per model input, each cell that row's array (a server's
        requests, already checked against the input's shape)."""
        sources = [
            ArraySource(name=name, described=f"input '{name}'", array=np.stack(dataframe[name].to_list()))
            for name in self.specs
        ]
        return ArrayBatches(sources, self.specs, rows=len(dataframe), batch_size=self.batch_size, row_problems={})

    def __getitem__(self, index: int) -> Batch:
        start = index * self.batch_size
        stop = min(start + self.batch_size, self.rows)
        # Table cells found bad when read; the common case, none, costs no per-row lookup.
        problems = {}
        if self.row_problems:
            problems = {row: self.row_problems[row] for row in range(start, stop) if row in self.row_problems}
        inputs = {}
        for source in self.sources:
            values, bad = _batch_values(source.rows(start, stop), np.dtype(self.specs[source.name].dtype))
            for slot in np.flatnonzero(bad):
                problems.setdefault(
                    start + int(slot), f"{source.described}: NaN or inf in the inputs of '{source.name}'"
                )
            inputs[source.name] = values
        errors = []
        for row in sorted(problems):
            errors.append((row, f"row {row}, {problems[row]}"))
            for values in inputs.values():
                values[row - start] = 0  # never fed as if it were real: its predictions are blanked
        return Batch(np.arange(start, stop, dtype=np.int64), inputs, errors, None)


def _batch_values(values: np.ndarray, dtype: np.dtype) -> tuple[np.ndarray, np.ndarray]:
    """A batch (a new array) in the model's dtype, and bool[B]: rows that are not all finite."""
    if values.dtype.kind == "f":
        bad = ~np.isfinite(values.reshape(len(values), -1)).all(axis=1)
    else:
        bad = np.zeros(len(values), dtype=bool)
    return values.astype(dtype, copy=False), bad


def build_array_dataset(
    task: TaskConfig, dataframe: pd.DataFrame, model_inputs: tuple[TensorSpec, ...]
) -> BatchDataset:
    """Batches of the task's numeric inputs in row order, checked against the model's inputs.

    Raises:
        ConfigError: an input's shape or dtype does not fit the model, or a model input has no values.
    """
    data = task.data
    specs = {spec.name: spec for spec in model_inputs}
    row_problems: dict[int, str] = {}
    if data.inputs is not None and data.inputs.suffix.lower() in (".npy", ".npz"):
        sources = _file_sources(data.inputs, model_inputs, model_name=task.model.name)
    else:
        table, described = _feature_table(task, dataframe)
        sources = _table_sources(table, described, task, model_inputs, row_problems)
    for source in sources:
        _check_shape(source, specs[source.name], model_name=task.model.name)
    return ArrayBatches(
        sources, specs, rows=len(dataframe), batch_size=task.runtime.batch_size, row_problems=row_problems
    )


def _file_sources(path: Path, model_inputs: tuple[TensorSpec, ...], *, model_name: str) -> list[ArraySource]:
    """A `.npy` feeds the model's only input; a `.npz` has one array per input, by name."""
    names = [spec.name for spec in model_inputs]
    if path.suffix.lower() == ".npy":
        if len(names) != 1:
            raise ConfigError(
                f"data.inputs {path.name} is one array but model {model_name} takes {len(names)} inputs "
                f"({', '.join(names)}); "
                "save them in one .npz, one array per input name (np.savez(path, **{name: array}))"
            )
        return [ArraySource(name=names[0], described=path.name, path=path)]
    arrays = _open_arrays(path)
    missing = [name for name in names if name not in arrays]
    if missing:
        single = len(names) == 1 and len(arrays) == 1
        if single:  # one array for one input: its name in the file does not matter
            return [ArraySource(name=names[0], described=path.name, array=next(iter(arrays.values())))]
        raise ConfigError(
            f"data.inputs {path.name} has arrays {', '.join(arrays)} but model {model_name} takes inputs "
            f"{', '.join(names)}: name each array after its input (missing: {', '.join(missing)})"
        )
    return [ArraySource(name=name, described=f"{path.name}['{name}']", array=arrays[name]) for name in names]


def _open_arrays(path: Path) -> dict[str, np.ndarray]:
    """The arrays of a `.npy` (memory-mapped) or `.npz` (read whole: zip members cannot be mapped)."""
    try:
        if path.suffix.lower() == ".npy":
            return {"": np.load(path, mmap_mode="r", allow_pickle=False)}
        with np.load(path, allow_pickle=False) as archive:
            return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError) as error:
        raise InputError(f"data.inputs {path}: not a readable NumPy file: {one_line(error)}") from None


def _feature_table(task: TaskConfig, dataframe: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The table holding the feature columns: the dataframe itself, or the inputs CSV/Parquet."""
    data = task.data
    if data.dataframe is not None:
        return dataframe, data.dataframe.name
    return _read_table(data.inputs, "inputs", index_column=data.id_column), data.inputs.name


def _table_sources(
    table: pd.DataFrame,
    described: str,
    task: TaskConfig,
    model_inputs: tuple[TensorSpec, ...],
    row_problems: dict[int, str],
) -> list[ArraySource]:
    """One float64 array per model input from its feature columns; cells that are not numbers go to `row_problems`."""
    data = task.data
    names = [spec.name for spec in model_inputs]
    if isinstance(data.feature_columns, dict):
        columns = data.feature_columns
        if sorted(columns) != sorted(names):
            raise ConfigError(
                f"data.feature_columns names inputs {', '.join(columns)} but model {task.model.name} takes "
                f"{', '.join(names)}"
            )
    elif len(names) != 1:
        raise ConfigError(
            f"model {task.model.name} takes {len(names)} inputs ({', '.join(names)}): give data.feature_columns "
            "as a mapping, input name -> its columns"
        )
    elif data.feature_columns is not None:
        columns = {names[0]: data.feature_columns}
    else:  # every column but the labels and the id (an inputs table has neither)
        excluded = {*data.label_columns, data.id_column} if data.dataframe is not None else set()
        columns = {names[0]: tuple(str(name) for name in table.columns if name not in excluded)}
    return [
        ArraySource(
            name=name, described=f"{described} columns of '{name}'", array=_numeric(table, list(cols), row_problems)
        )
        for name, cols in columns.items()
    ]


def _numeric(table: pd.DataFrame, columns: list[str], row_problems: dict[int, str]) -> np.ndarray:
    """float64[N, len(columns)]; a cell that is not a number becomes NaN and its row a problem, named by column."""
    values = np.empty((len(table), len(columns)), dtype=np.float64)
    for j, column in enumerate(columns):
        cells = table[column]
        numbers = pd.to_numeric(cells, errors="coerce").to_numpy(dtype=np.float64)
        for row in np.flatnonzero(~np.isfinite(numbers)):
            row_problems.setdefault(
                int(row), f"feature column '{column}': expected a finite number, got {cells.iloc[row]!r}"
            )
        values[:, j] = numbers
    return values


def _check_shape(source: ArraySource, spec: TensorSpec, *, model_name: str) -> None:
    """The source's rows must have the model input's shape (flat feature columns are reshaped to it)."""
    values = source.values()
    wanted = spec.shape[1:]
    found = values.shape[1:]
    flat_columns = source.path is None and values.ndim == 2 and len(wanted) > 1 and None not in wanted
    if flat_columns and math.prod(wanted) == found[0]:  # for a (T, F) input: row-major, as numpy reshapes
        source.array = values.reshape((len(values), *wanted))
        return
    fits = len(found) == len(wanted) and all(w is None or w == f for w, f in zip(wanted, found))
    if not fits:
        raise ConfigError(
            f"{source.described}: rows of shape {format_shape(found)} (array {format_shape(values.shape)}) but model "
            f"{model_name} input '{spec.name}' takes {format_shape(spec.shape)}{_shape_hint(found, wanted)}"
        )
    if np.dtype(spec.dtype).kind in "iu" and values.dtype.kind == "f":
        raise ConfigError(
            f"{source.described}: holds {values.dtype} values but model {model_name} input '{spec.name}' takes "
            f"{np.dtype(spec.dtype).name} (ids); save the array as integers"
        )


def _shape_hint(found: tuple[int, ...], wanted: tuple[int | None, ...]) -> str:
    if len(found) == len(wanted) == 2 and wanted[0] is not None and found[0] != wanted[0]:
        return f" (windows of {found[0]} for a model that takes {wanted[0]})"
    return ""
