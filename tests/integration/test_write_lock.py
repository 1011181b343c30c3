"""The SQLite writers' flock: exclusive across threads and processes, re-entrant in a thread."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

from syncapp.store.db import make_engine, sqlite_write_lock, sqlite_write_lock_path
from tests.subprocesses import child_env
from tests.waiting import flock_waiters, wait_until

HOLD_IN_CHILD = """
import fcntl, sys, time
with open(sys.argv[1], "a") as handle:
    fcntl.flock(handle, fcntl.LOCK_EX)
    print("held", flush=True)
    sys.stdin.readline()
"""


def test_only_file_databases_have_a_write_lock(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    assert sqlite_write_lock_path(engine) == Path(f"{tmp_path / 'x.db'}.write-lock")
    assert sqlite_write_lock_path(make_engine("sqlite://")) is None


def test_the_lock_is_reentrant_within_a_thread_and_exclusive_across_threads(
    tmp_path: Path,
) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    order: list[str] = []
    entered = threading.Event()

    def other() -> None:
        entered.set()
        with sqlite_write_lock(engine):
            order.append("other")

    path = sqlite_write_lock_path(engine)
    assert path is not None
    with sqlite_write_lock(engine), sqlite_write_lock(engine):  # nested: no self-deadlock
        thread = threading.Thread(target=other)
        thread.start()
        assert entered.wait(5)
        wait_until(lambda: flock_waiters(path) == 1, what="the other thread blocked on the lock")
        assert order == []
        order.append("first")
    thread.join(5)
    assert order == ["first", "other"]


def test_another_process_holding_the_lock_makes_us_wait(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'x.db'}")
    path = sqlite_write_lock_path(engine)
    assert path is not None
    got: list[bool] = []

    def take() -> None:
        with sqlite_write_lock(engine):
            got.append(True)

    with subprocess.Popen(
        [sys.executable, "-c", HOLD_IN_CHILD, str(path)],
        env=child_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        assert child.stdin is not None
        assert child.stdout.readline().strip() == "held"
        thread = threading.Thread(target=take)
        thread.start()
        wait_until(lambda: flock_waiters(path) == 1, what="our thread blocked on the lock")
        assert got == []
        child.stdin.write("release\n")
        child.stdin.flush()
        thread.join(10)
        child.wait(10)
    assert got == [True]
