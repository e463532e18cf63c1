"""The thread-safety contract of every dlkernels object that holds state.

Reads (queries, samples, lookups) run concurrently, each with the GIL released
inside its kernel. A write (add, remove, update, fit, load into an object)
waits until the reads in flight have finished and keeps new reads out until it
is done, so a read never sees half of a write. Writers are preferred: a steady
stream of reads cannot starve an update.

Methods declare which side they are on with :func:`reads` and :func:`writes`.
The lock is re-entrant for the thread that holds it (a write may call a read
method; a read may call another read even while a writer waits), it pickles
and deep-copies as a fresh lock, and a child process made by ``os.fork()``
starts with every lock free: a thread of the parent that held one does not
exist in the child.
"""

from __future__ import annotations

import functools
import os
import threading
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, Concatenate, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

__all__ = ["RWLock", "lock_of", "reads", "writes"]


class RWLock:
    """A readers-writer lock, writer-preferring and re-entrant per thread."""

    __slots__ = ("_cond", "_readers", "_writer", "_writer_depth", "_waiting_writers",
                 "_local", "__weakref__")

    def __init__(self) -> None:
        self._reset()
        _ALL_LOCKS.add(self)

    def _reset(self) -> None:
        self._cond = threading.Condition(threading.Lock())
        self._readers = 0             # read holds, counting re-entries
        self._writer = None           # ident of the thread that writes
        self._writer_depth = 0
        self._waiting_writers = 0
        self._local = threading.local()  # .reads: this thread's read depth

    def _my_reads(self) -> int:
        return getattr(self._local, "reads", 0)

    @contextmanager
    def read(self) -> Iterator[None]:
        """Hold the lock shared for the ``with`` block."""
        me = threading.get_ident()
        with self._cond:
            # A thread that already reads (or writes) re-enters at once: waiting
            # for a queued writer here would wait for ourselves.
            if self._writer != me and self._my_reads() == 0:
                while self._writer is not None or self._waiting_writers:
                    self._cond.wait()
            self._readers += 1
            self._local.reads = self._my_reads() + 1
        try:
            yield
        finally:
            with self._cond:
                self._readers -= 1
                self._local.reads -= 1
                if self._readers == 0:
                    self._cond.notify_all()

    @contextmanager
    def write(self) -> Iterator[None]:
        """Hold the lock exclusively for the ``with`` block."""
        me = threading.get_ident()
        with self._cond:
            if self._writer == me:
                self._writer_depth += 1
            else:
                if self._my_reads():
                    raise RuntimeError("a thread that holds a read lock cannot take the "
                                       "write lock (it would wait for itself)")
                self._waiting_writers += 1
                try:
                    while self._writer is not None or self._readers:
                        self._cond.wait()
                finally:
                    self._waiting_writers -= 1
                self._writer, self._writer_depth = me, 1
        try:
            yield
        finally:
            with self._cond:
                self._writer_depth -= 1
                if self._writer_depth == 0:
                    self._writer = None
                    self._cond.notify_all()

    def __reduce__(self) -> tuple[type[RWLock], tuple[()]]:
        # Pickles and copies carry a fresh, free lock: holders are per process.
        return (RWLock, ())

    def __repr__(self) -> str:
        state = "writing" if self._writer is not None else f"{self._readers} reading"
        return f"<RWLock {state}>"


_ALL_LOCKS: weakref.WeakSet[RWLock] = weakref.WeakSet()
_CREATE = threading.Lock()


def _free_all_locks_in_child() -> None:
    for lock in list(_ALL_LOCKS):
        lock._reset()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_free_all_locks_in_child)


def lock_of(obj: Any) -> RWLock:
    """The lock of ``obj``, created on first use (objects made by ``__new__`` too)."""
    lock = obj.__dict__.get("_rwlock")
    if lock is None:
        with _CREATE:
            lock = obj.__dict__.setdefault("_rwlock", RWLock())
    return lock


def reads(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run ``method`` under its object's lock, shared with other reads."""
    @functools.wraps(method)
    def locked(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        with lock_of(self).read():
            return method(self, *args, **kwargs)
    return locked


def writes(method: Callable[Concatenate[S, P], R]) -> Callable[Concatenate[S, P], R]:
    """Run ``method`` under its object's lock, alone."""
    @functools.wraps(method)
    def locked(self: S, *args: P.args, **kwargs: P.kwargs) -> R:
        with lock_of(self).write():
            return method(self, *args, **kwargs)
    return locked
