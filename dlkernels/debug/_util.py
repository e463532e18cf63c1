"""Helpers shared by the profiler and the checks: nested tensors, storages, sizes.

The functions import torch when called; :mod:`dlkernels.debug` has checked by then that
it is installed.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

__all__ = ["iter_tensors", "flat_tensors", "storage_key", "tensor_bytes",
           "distinct_bytes", "format_bytes", "parameter_index"]

def iter_tensors(obj, path: str = "", *, strict: bool = False, what: str = "value",
                 _depth: int = 0) -> Iterator[tuple[str, object]]:
    """Yield ``(path, tensor)`` for every tensor in a nest of tuples, lists and dicts.

    ``path`` is how the tensor is reached from ``obj``: ``"[0]"``, ``"['x'][1]"``,
    ``""`` for ``obj`` itself. With ``strict=True`` any other leaf (a number,
    ``None``, a numpy array) raises a TypeError that names ``what`` and the path;
    otherwise such leaves are skipped (model outputs often carry metadata).
    """
    import torch

    if isinstance(obj, torch.Tensor):
        yield path, obj
        return
    if _depth > 32:
        raise TypeError(f"{what}{path} is nested more than 32 levels deep")
    if isinstance(obj, Mapping):
        for key, value in obj.items():
            yield from iter_tensors(value, f"{path}[{key!r}]", strict=strict, what=what,
                                    _depth=_depth + 1)
    elif isinstance(obj, (tuple, list)):
        for i, value in enumerate(obj):
            yield from iter_tensors(value, f"{path}[{i}]", strict=strict, what=what,
                                    _depth=_depth + 1)
    elif strict:
        raise TypeError(f"{what}{path} must be a torch.Tensor or a tuple, list or dict "
                        f"of tensors, got {type(obj).__module__}.{type(obj).__qualname__}")


def flat_tensors(obj, out: list | None = None, _depth: int = 0) -> list:
    """The tensors in a nest of tuples, lists and dicts, without paths (the fast path)."""
    import torch

    if out is None:
        out = []
    if isinstance(obj, torch.Tensor):
        out.append(obj)
    elif _depth <= 32:
        if isinstance(obj, Mapping):
            obj = obj.values()
        elif not isinstance(obj, (tuple, list)):
            return out
        for value in obj:
            flat_tensors(value, out, _depth + 1)
    return out


def storage_key(t) -> tuple[object, int]:
    """``(key, nbytes)`` of the memory that tensor ``t`` keeps alive.

    The key identifies the storage (its address and device), so views of one
    tensor and tensors that share memory get the same key and are counted once;
    ``nbytes`` is the whole storage, because a saved view keeps all of it alive.
    Tensors without a single storage (sparse, nested) are keyed by identity and
    sized by their elements.
    """
    try:
        storage = t.untyped_storage()
        return (storage.data_ptr(), storage.device), storage.nbytes()
    except (RuntimeError, NotImplementedError, TypeError):
        return ("tensor", id(t)), tensor_bytes(t)


def tensor_bytes(t) -> int:
    """Bytes of the elements of ``t`` (not of its storage)."""
    try:
        return t.numel() * t.element_size()
    except (RuntimeError, NotImplementedError, TypeError):
        return 0


def distinct_bytes(tensors) -> int:
    """Total storage bytes of ``tensors``, each storage counted once."""
    seen: dict[object, int] = {}
    for t in tensors:
        key, nbytes = storage_key(t)
        seen[key] = nbytes
    return sum(seen.values())


def format_bytes(n: int | float | None) -> str:
    """``1536`` -> ``'1.50 KiB'``; binary units; ``None`` -> ``'-'``."""
    if n is None:
        return "-"
    sign, n = ("-" if n < 0 else ""), abs(n)
    if n < 1024:
        return f"{sign}{int(n)} B"
    for unit in ("KiB", "MiB", "GiB", "TiB"):
        n /= 1024
        if n < 1024 or unit == "TiB":
            return f"{sign}{n:.2f} {unit}"
    raise AssertionError("unreachable")


def parameter_index(model) -> dict[int, str]:
    """``{id(parameter): name}`` for every parameter of ``model``, trainable or not."""
    return {id(p): name for name, p in model.named_parameters()}
