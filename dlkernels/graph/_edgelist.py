"""Edge-list text files: ``src dst [weight]`` per line, ``#`` comments.

Two readers give the same result. The fast one is ``numpy.loadtxt`` (compiled
since numpy 1.23: about 0.3 s for a million lines here) for the common case,
integer ids and exactly 2 (or, weighted, 3) columns with valid weights. Anything
else, strings ids included, goes to a pass over the lines in Python (about 3 s
for a million lines), which also finds and reports the file and line of the
first malformed one. There, ids are kept as text until every line is read; they
become integers if all of them parse as integers (else they stay strings).
Either way labels are mapped to 0..n-1 in sorted order with ``numpy.unique``.
"""

from __future__ import annotations

import math
import os
import warnings

import numpy as np

__all__ = ["read_edges"]


def _parse_weight(text: str, where: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{where}: weight must be a number, got {text!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{where}: weight must be finite, got {text!r}")
    if value < 0:
        raise ValueError(f"{where}: weight must be non-negative, got {text!r}")
    return value


def _as_int_labels(labels: list[str]):
    """The labels as int64 if every one is a plain integer, else None."""
    try:
        values = [int(label, 10) for label in labels]
    except ValueError:
        return None
    if any(not -2**63 <= v < 2**63 for v in values):
        return None
    return np.array(values, dtype=np.int64)


def _read_fast(name: str, weighted: bool):
    """``(ids of shape (m, 2), weights or None)`` by numpy.loadtxt, or None to take the slow path."""
    two = [("src", np.int64), ("dst", np.int64)]
    # Unweighted files may still carry a weight column (ignored): try both.
    layouts = [two + [("w", np.float64)]] if weighted else [two, two + [("w", np.float64)]]
    rows = None
    for fields in layouts:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # "empty input": the slow path says it better
                rows = np.loadtxt(name, dtype=fields, comments="#", ndmin=1, encoding="utf-8")
            break
        except (ValueError, OverflowError):
            continue  # string ids, a malformed line, ...: the slow path decides
    if rows is None or rows.size == 0:
        return None
    weights = None
    if weighted:
        weights = np.ascontiguousarray(rows["w"])
        if not (np.isfinite(weights).all() and (weights >= 0).all()):
            return None  # the slow path names the line
    return np.stack([rows["src"], rows["dst"]], axis=1), weights


def read_edges(path, weighted: bool):
    """``(src, dst, weights or None, labels)`` from an edge-list file.

    ``src`` and ``dst`` are int64 indices into ``labels`` (sorted, distinct).
    """
    name = os.fspath(path)
    fast = _read_fast(name, weighted)
    if fast is not None:
        ids, w = fast
        labels, inverse = np.unique(ids.reshape(-1), return_inverse=True)
        pairs = inverse.reshape(-1, 2).astype(np.int64)
        return pairs[:, 0].copy(), pairs[:, 1].copy(), w, labels
    ends: list[str] = []
    weights: list[float] = []
    need = 3 if weighted else 2
    # Bytes, decoded line by line, so that a file that is not UTF-8 text is
    # reported with its name and line.
    with open(name, "rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise ValueError(f"{name}:{number}: not UTF-8 text (byte {raw[exc.start]:#04x} "
                                 f"at column {exc.start + 1}); an edge list is a text file") from None
            content = line.split("#", 1)[0]
            fields = content.split()
            if not fields:
                continue
            if len(fields) < need or len(fields) > 3:
                expected = "src dst weight" if weighted else "src dst [weight]"
                raise ValueError(f"{name}:{number}: expected '{expected}', got {line.strip()!r}")
            ends.append(fields[0])
            ends.append(fields[1])
            if weighted:
                weights.append(_parse_weight(fields[2], f"{name}:{number}"))
    if not ends:
        raise ValueError(f"{name}: no edges in the file (an empty graph)")
    numeric = _as_int_labels(ends)
    tokens = numeric if numeric is not None else np.array(ends)
    labels, inverse = np.unique(tokens, return_inverse=True)
    pairs = inverse.reshape(-1, 2).astype(np.int64)
    w = np.array(weights, dtype=np.float64) if weighted else None
    return pairs[:, 0].copy(), pairs[:, 1].copy(), w, labels
