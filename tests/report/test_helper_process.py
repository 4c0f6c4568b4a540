"""The forked helper process that imports scikit-learn while a run loads and scores (issue 18)."""

from __future__ import annotations

import os

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
    process.close(kill=True)


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


def test_closing_ends_the_helper():
    answered = HelperProcess("json")
    answered.call(os.getpid)
    answered.close()
    answered._process.join()
    assert answered._process.exitcode == 0
    importing = HelperProcess("sklearn.metrics")
    importing.close(kill=True)  # mid-import: stopped where it is
    importing._process.join()
    assert importing._process.exitcode != 0
