"""dlkernels._lib.locks: the readers-writer lock behind the thread-safety contract."""

import copy
import os
import pickle
import threading
import time
import warnings

import pytest

from dlkernels._lib.locks import RWLock, lock_of, reads, writes


def _in_thread(fn):
    t = threading.Thread(target=fn, daemon=True)
    t.start()
    return t


def test_readers_share_the_lock():
    lock = RWLock()
    inside = threading.Barrier(3, timeout=10)

    def reader():
        with lock.read():
            inside.wait()  # all three readers are inside at once, or this times out

    threads = [_in_thread(reader) for _ in range(2)]
    reader()
    for t in threads:
        t.join(10)
        assert not t.is_alive()


def test_writer_excludes_readers_and_writers():
    lock = RWLock()
    log = []
    with lock.write():
        others = [_in_thread(lambda: _read(lock, log)), _in_thread(lambda: _write(lock, log))]
        time.sleep(0.2)
        assert log == []          # both wait while the write lasts
    for t in others:
        t.join(10)
        assert not t.is_alive()
    assert sorted(log) == ["r", "w"]


def test_waiting_writer_keeps_new_readers_out():
    lock = RWLock()
    order = []
    first_read = lock.read()
    first_read.__enter__()
    writer = _in_thread(lambda: _write(lock, order))
    while not lock._waiting_writers:
        time.sleep(0.001)
    late_reader = _in_thread(lambda: _read(lock, order))
    time.sleep(0.2)
    assert order == []            # the writer waits for the first read; the late read waits too
    first_read.__exit__(None, None, None)
    writer.join(10)
    late_reader.join(10)
    assert order == ["w", "r"]    # writer preference: no starvation by a stream of reads


def _write(lock, order):
    with lock.write():
        order.append("w")


def _read(lock, order):
    with lock.read():
        order.append("r")


def test_reentrant_for_the_holder():
    lock = RWLock()
    with lock.write():
        with lock.write():
            with lock.read():
                pass
    with lock.read():
        # A re-entering reader must not wait for a queued writer (it would wait for itself).
        writer = _in_thread(lambda: _write(lock, []))
        while not lock._waiting_writers:
            time.sleep(0.001)
        with lock.read():
            pass
    writer.join(10)
    assert not writer.is_alive()


def test_upgrade_is_refused_instead_of_deadlocking():
    lock = RWLock()
    with lock.read():
        with pytest.raises(RuntimeError, match="read lock"):
            with lock.write():
                pass
    with lock.write():  # and the lock is free again afterwards
        pass


def test_lock_is_released_when_the_body_raises():
    lock = RWLock()
    with pytest.raises(KeyError):
        with lock.write():
            raise KeyError("x")
    with pytest.raises(KeyError):
        with lock.read():
            raise KeyError("x")
    assert lock._writer is None and lock._readers == 0


class Counter:
    def __init__(self):
        self.a = self.b = 0

    @writes
    def bump(self):
        self.a += 1
        time.sleep(0)     # invite a switch between the two writes
        self.b += 1

    @reads
    def torn(self):
        a = self.a
        time.sleep(0)
        return a != self.b


def test_decorators_never_show_a_torn_state():
    c = Counter()
    stop = threading.Event()
    seen = []

    def reader():
        while not stop.is_set():
            seen.append(c.torn())

    threads = [_in_thread(reader) for _ in range(3)]
    for _ in range(2000):
        c.bump()
    stop.set()
    for t in threads:
        t.join(10)
    assert seen and not any(seen)


def test_pickle_and_copy_give_a_fresh_free_lock():
    c = Counter()
    lock = lock_of(c)
    with lock.write():
        for clone in (pickle.loads(pickle.dumps(c)), copy.deepcopy(c), copy.copy(c)):
            fresh = lock_of(clone)
            if clone.__dict__.get("_rwlock") is lock:   # copy.copy shares the dict entries
                continue
            with fresh.write():
                pass
    assert lock_of(c) is lock


@pytest.mark.skipif(not hasattr(os, "fork"), reason="no fork")
def test_a_child_forked_while_another_thread_writes_starts_with_a_free_lock():
    lock = RWLock()
    holding, release = threading.Event(), threading.Event()

    def hold():
        with lock.write():
            holding.set()
            release.wait(10)

    t = _in_thread(hold)
    holding.wait(10)
    with warnings.catch_warnings():  # Python 3.12+ warns about fork in a threaded process
        warnings.simplefilter("ignore", DeprecationWarning)
        pid = os.fork()
    if pid == 0:
        # The holder thread does not exist here; without the reset this would hang.
        done = threading.Event()
        threading.Thread(target=lambda: (_write(lock, []), done.set()), daemon=True).start()
        os._exit(0 if done.wait(5) else 1)
    _, status = os.waitpid(pid, 0)
    release.set()
    t.join(10)
    assert os.waitstatus_to_exitcode(status) == 0


def test_repr_says_the_state():
    lock = RWLock()
    assert "0 reading" in repr(lock)
    with lock.write():
        assert "writing" in repr(lock)
