"""Decoding worker processes: batches built in forked processes and handed over through pipes, in order.

Worker w of W builds batches w, w + W, w + 2W, ... and writes each into its own pipe; the main
process reads batch k from worker k mod W, so batches arrive in row order. A worker runs ahead of
the reader by what its pipe holds (64 KiB on Linux) and the batch it is sending: it waits in `send`
until the main process reads.

Why not torch's DataLoader: importing torch takes 2-4 s on the 2-core development VM, and its
hand-over (each array moved into a shared-memory file of its own, the file's descriptor sent over
a socket) cost about 4 ms of CPU per batch: for 8,192 images of 52x52 in batches of 32, 2.7-2.8
CPU-seconds in all against 1.7 for decoding them in one process (docs/performance.md). Here a
batch is pickled with its arrays out of band (protocol 5); their bytes go from the array into the
pipe and from the pipe into the new array's buffer, two copies, both made by the kernel.

Workers are forked (Linux and macOS): the dataset is inherited, not pickled. A worker that fails
sends its exception, which the main process raises; one that dies is reported with its exit code;
when the main process stops reading (an error, the end, a kill), the workers are stopped too: a
worker left writing into a pipe nobody reads gets a broken pipe and exits.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import signal
import sys
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from predict.data.collate import Batch, BatchDataset, can_fork
from predict.errors import ConfigError


@dataclass(frozen=True)
class WorkerBatches:
    """Batches `first_batch`.. of a dataset, built by `num_workers` forked processes, in order.

    Processes start when iteration starts and stop when it ends, however it ends.
    """

    dataset: BatchDataset
    num_workers: int
    first_batch: int = 0

    def __len__(self) -> int:
        return max(0, len(self.dataset) - self.first_batch)

    def __iter__(self) -> Iterator[Batch]:
        indices = range(self.first_batch, len(self.dataset))
        if not indices:
            return
        if not can_fork():
            raise ConfigError(
                f"runtime.num_workers is {self.num_workers}: decoding worker processes are forked, which "
                f"{sys.platform} cannot do; set runtime.num_workers: 0"
            )
        context = multiprocessing.get_context("fork")
        pipes = [context.Pipe(duplex=False) for _ in range(min(self.num_workers, len(indices)))]
        readers = [reader for reader, _ in pipes]
        workers = []
        try:
            for number, (_, writer) in enumerate(pipes):
                mine = indices[number :: len(pipes)]
                others = readers + [other for _, other in pipes[number + 1 :]]  # the earlier writers are closed
                process = context.Process(
                    target=_build_batches,
                    args=(self.dataset, mine, writer, others),
                    name=f"predict-decoder-{number}",
                    daemon=True,
                )
                process.start()
                writer.close()  # the worker holds its end: when it exits, reading gives EOFError, not a hang
                workers.append(process)
            for position, index in enumerate(indices):
                number = position % len(pipes)
                yield _receive(readers[number], workers[number], index)
        finally:
            for reader in readers:
                reader.close()  # a worker still writing gets a broken pipe and exits
            for process in workers:
                process.join(timeout=5)
                if process.is_alive():  # decoding a batch nobody will read
                    process.kill()
                    process.join()


def _build_batches(dataset: BatchDataset, indices: range, writer: Connection, others: list[Connection]) -> None:
    """A worker's life: build its batches in order and send each, or send the exception that stopped it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's to handle
    if "torch" in sys.modules:  # audio features: torch's thread pool does not survive a fork (it hangs)
        sys.modules["torch"].set_num_threads(1)  # as torch's own DataLoader workers do
    # The other pipe ends it inherited: held open here, a pipe would not break when the main process
    # dies (this worker would wait forever to write), nor end when another worker dies.
    for connection in others:
        connection.close()
    index = indices.start
    try:
        for index in indices:
            _send(writer, dataset[index])
    except BrokenPipeError:
        return  # the main process stopped reading
    except BaseException as error:  # whatever stopped the worker is the main process's to raise
        with contextlib.suppress(BrokenPipeError):  # unless it stopped reading
            _send(writer, _Failure(index, _picklable(error), traceback.format_exc()))


@dataclass(frozen=True)
class _Failure:
    """What stopped a worker at batch `index`."""

    index: int
    error: BaseException
    traceback: str


def _picklable(error: BaseException) -> BaseException:
    """The exception itself if it survives pickling (the project's errors do), else its text."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:  # any failure to round-trip means: send text instead
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _send(writer: Connection, value: Any) -> None:
    """Pickle `value` with its arrays' buffers out of band, then write each buffer as it is."""
    buffers: list[pickle.PickleBuffer] = []
    header = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    raws = [buffer.raw() for buffer in buffers]
    writer.send((header, [raw.nbytes for raw in raws]))
    for raw in raws:
        writer.send_bytes(raw)


def _receive(reader: Connection, worker: multiprocessing.process.BaseProcess, index: int) -> Batch:
    """Batch `index` from its worker: read into fresh, writable buffers; a worker's failure is raised here."""
    try:
        header, sizes = reader.recv()
        buffers = []
        for size in sizes:
            buffer = bytearray(size)
            reader.recv_bytes_into(buffer)
            buffers.append(buffer)
    except EOFError:
        worker.join()
        raise RuntimeError(
            f"decoding worker {worker.name} (pid {worker.pid}) ended with exit code {worker.exitcode} "
            f"before sending batch {index}"
        ) from None
    value = pickle.loads(header, buffers=buffers)
    if isinstance(value, _Failure):
        raise value.error from RuntimeError(f"in {worker.name}, building batch {value.index}:\n{value.traceback}")
    return value
