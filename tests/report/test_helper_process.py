"""The forked helper process that imports scikit-learn while a run loads and scores (issue 18)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys

import pytest

from predict.report.helper_process import HelperProcess


class Unpicklable(Exception):
    def __init__(self) -> None:
        super().__init__("cannot travel")
        self.handle = lambda: None  # a lambda does not pickle


def raise_unpicklable() -> None:
    raise Unpicklable


@pytest.fixture
def helper():
    process = HelperProcess("json")
    yield process
    process.close()


def test_a_call_runs_in_the_helper_and_returns_its_value(helper):
    assert helper.call(os.getpid) != os.getpid()
    assert helper.call(divmod, 17, 5) == (3, 2)


def test_an_exception_in_the_helper_is_raised_in_the_caller(helper):
    with pytest.raises(ZeroDivisionError):
        helper.call(divmod, 1, 0)
    with pytest.raises(RuntimeError, match="raise_unpicklable failed: Unpicklable"):
        helper.call(raise_unpicklable)
    assert helper.call(divmod, 7, 2) == (3, 1)  # it still answers


def test_a_call_whose_helper_died_runs_in_the_caller(helper):
    helper._process.kill()
    helper._process.join()
    assert helper.call(os.getpid) == os.getpid()


def test_closing_ends_the_helper_at_once_and_later_calls_run_here():
    for module in ("json", "sklearn.metrics"):  # idle after answering; still importing
        helper = HelperProcess(module)
        if module == "json":
            assert helper.call(os.getpid) != os.getpid()
        helper.close()
        assert not helper._process.is_alive() and helper._process.exitcode == -signal.SIGKILL
        assert helper.call(os.getpid) == os.getpid()


def test_a_helper_whose_run_is_killed_exits(tmp_path):
    # The run holds the write end of a pipe that only the test reads; its helper inherits it when forked. The read
    # end sees its end once every holder is gone: the run (killed) and the helper (which must notice and exit).
    read_end, write_end = os.pipe()
    run = subprocess.Popen(
        [sys.executable, "-c", "import sys; from predict.report.helper_process import HelperProcess; "
         "helper = HelperProcess('json'); print(helper.call(sum, [1, 2]), flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, pass_fds=(write_end,),
    )  # fmt: skip
    os.close(write_end)
    try:
        assert run.stdout.readline() == "3\n"  # the helper answered: it is running
        run.send_signal(signal.SIGKILL)
        run.wait()
        ended, _, _ = select.select([read_end], [], [], 120)  # a bound for a helper that never exits, not a wait
        assert ended and os.read(read_end, 1) == b"", "the helper outlived its killed run"
    finally:
        run.kill()
        os.close(read_end)
