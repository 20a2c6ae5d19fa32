"""pytest glue for the integration tests: harness.py on the import path, and a per-test
reaper so that no process outlives the test that started it, whatever the test did.

Fixtures that start processes stop them by pid at teardown; the reaper below is the safety
net for a process a test started and left running (an assertion failed before its stop),
and atexit (harness.py) is the last one. When a test fails, the logs of the processes it
started are attached to the report.
"""
import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(__file__))
import harness  # noqa: E402
from test_pg import Cluster, pg_bin  # noqa: E402


@pytest.fixture(scope="module")
def pg():
    """A private PostgreSQL cluster for the module (scripts/pg.sh, stopped by its pid at the
    end); skips, saying why, when the server binaries are not installed."""
    if not pg_bin("initdb"):
        pytest.skip("no PostgreSQL server binaries (scripts/deps.sh installs postgresql-15)")
    c = Cluster()
    yield c
    c.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    rep = outcome.get_result()
    setattr(item, "rep_" + rep.when, rep)


@pytest.fixture(autouse=True)
def _reap_processes(request):
    """Every process started during this test (fixtures of function scope included) that is
    still running at the end is killed by its pid."""
    mark = harness.procs_started()
    yield
    rep = getattr(request.node, "rep_call", None)
    if rep is not None and rep.failed:
        for log_path in harness.logs_since(mark):
            try:
                with open(log_path, "rb") as f:
                    text = f.read().decode(errors="replace")[-3000:]
            except OSError:
                continue
            rep.sections.append(("log " + os.path.basename(log_path), text))
    harness.stop_since(mark)


_module_marks = {}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_setup(item):
    _module_marks.setdefault(item.module.__name__, harness.procs_started())
    yield


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """After the last test of a module (and its module-scoped fixtures' teardown), every
    process the module started that is still running is killed by its pid."""
    yield
    if nextitem is None or nextitem.module is not item.module:
        mark = _module_marks.pop(item.module.__name__, None)
        if mark is not None:
            harness.stop_since(mark)
