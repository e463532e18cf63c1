"""The architecture a ``.fdlz`` file may describe: a closed list of layer types.

A file names layers and their arguments; nothing else can be built from it. A
description is checked in full before anything is constructed: every argument
against its type and range, and the tensors it implies (names and shapes,
:func:`state_shapes`) against the tensors the file holds. The model is then
built on torch's ``meta`` device (no memory) and receives the decoded tensors
themselves, so it never allocates more than the file describes. No device or
dtype argument is ever taken from a file.

A description is ``("Sequential", [(name, child), ...])`` or ``(kind, args)``
with ``args`` a dict of the arguments listed in :data:`LAYERS`.
"""

from __future__ import annotations

import math
import numbers

import torch

__all__ = ["LAYERS", "describe", "check_spec", "state_shapes", "build", "MAX_DEPTH"]

MAX_DEPTH = 32           # nesting of Sequential
MAX_LAYERS = 1 << 16
_MAX_INT = 1 << 31       # any size or count argument
_NAME_CHARS = 256


class ArchError(ValueError):
    """An architecture description that cannot be built as it is."""


# Argument kinds: each checks one value and returns it normalised.
def _int(low, high=_MAX_INT):
    def check(value, name):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
                or not low <= value <= high:
            raise ArchError(f"{name} must be an int in [{low}, {high}], got {value!r}")
        return int(value)
    check.kind = ("int", low, high)
    return check


def _bool(value, name):
    if not isinstance(value, bool):
        raise ArchError(f"{name} must be true or false, got {value!r}")
    return value


_bool.kind = ("bool",)


def _float(low, high, *, optional=False, open_low=False):
    def check(value, name):
        if value is None and optional:
            return None
        if isinstance(value, bool) or not isinstance(value, numbers.Real) \
                or not math.isfinite(value) or not low <= value <= high \
                or (open_low and value == low):
            raise ArchError(f"{name} must be a number in {'(' if open_low else '['}{low}, "
                            f"{high}]{' or null' if optional else ''}, got {value!r}")
        return float(value)
    check.kind = ("float", optional)
    return check


def _choice(*options):
    def check(value, name):
        if value not in options or not isinstance(value, str):
            raise ArchError(f"{name} must be one of {options}, got {value!r}")
        return value
    check.kind = ("choice", options)
    return check


def _ints(n, low, *, scalar_ok=False, words=()):
    """A tuple of ``n`` ints >= low (or one int, or one of ``words``, where allowed)."""
    one = _int(low)

    def check(value, name):
        if isinstance(value, str) and value in words:
            return value
        if scalar_ok and isinstance(value, numbers.Integral) and not isinstance(value, bool):
            return one(value, name)
        if not isinstance(value, (list, tuple)) or len(value) != n:
            raise ArchError(f"{name} must be {n} ints{' or one int' if scalar_ok else ''}"
                            f"{' or one of ' + str(words) if words else ''}, got {value!r}")
        return tuple(one(v, name) for v in value)
    check.kind = ("ints", n, scalar_ok, words)
    return check


def _dims(value, name):
    return _int(-64, 64)(value, name)


_dims.kind = ("int", -64, 64)


def _conv(d):
    return {"in_channels": _int(1), "out_channels": _int(1), "kernel_size": _ints(d, 1),
            "stride": _ints(d, 1), "padding": _ints(d, 0, words=("same", "valid")),
            "dilation": _ints(d, 1), "groups": _int(1), "bias": _bool,
            "padding_mode": _choice("zeros", "reflect", "replicate", "circular")}


def _norm():
    return {"num_features": _int(1), "eps": _float(0.0, 1.0, open_low=True),
            "momentum": _float(0.0, 1.0, optional=True), "affine": _bool,
            "track_running_stats": _bool}


def _pool():
    return {"kernel_size": _ints(2, 1, scalar_ok=True), "stride": _ints(2, 1, scalar_ok=True),
            "padding": _ints(2, 0, scalar_ok=True)}


# The layer types a file may name, and their arguments (all required, in this order).
LAYERS = {
    "Linear": {"in_features": _int(1), "out_features": _int(1), "bias": _bool},
    "Conv1d": _conv(1), "Conv2d": _conv(2),
    "BatchNorm1d": _norm(), "BatchNorm2d": _norm(),
    "ReLU": {}, "Tanh": {}, "Sigmoid": {}, "Identity": {}, "SiLU": {},
    "GELU": {"approximate": _choice("none", "tanh")},
    "LeakyReLU": {"negative_slope": _float(-1e6, 1e6)},
    "Dropout": {"p": _float(0.0, 1.0)},
    "Flatten": {"start_dim": _dims, "end_dim": _dims},
    "Softmax": {"dim": _dims}, "LogSoftmax": {"dim": _dims},
    "MaxPool2d": _pool(), "AvgPool2d": _pool(),
}


def describe(module, prefix: str, names: set):
    """The description of ``module`` if it is a Sequential of known layers, else None."""
    if type(module) is torch.nn.Sequential:
        children = []
        for name, child in module.named_children():
            spec = describe(child, f"{prefix}{name}.", names)
            if spec is None:
                return None
            children.append((name, spec))
        return ("Sequential", children)
    kind = type(module).__name__
    if kind not in LAYERS or type(module) is not getattr(torch.nn, kind):
        return None
    args = {}
    for arg in LAYERS[kind]:
        value = f"{prefix}bias" in names if arg == "bias" else getattr(module, arg)
        args[arg] = value
    if kind in ("Softmax", "LogSoftmax") and args["dim"] is None:
        return None   # the implicit dim of old torch: not worth a format of its own
    if kind == "AvgPool2d" and (module.ceil_mode or not module.count_include_pad
                                or module.divisor_override is not None):
        return None
    if kind == "MaxPool2d" and (module.ceil_mode or module.return_indices or module.dilation != 1):
        return None
    try:
        return (kind, _check_args(kind, args, prefix or "model"))
    except ArchError:
        return None


def _check_args(kind: str, args, where: str) -> dict:
    schema = LAYERS[kind]
    if not isinstance(args, dict) or set(args) != set(schema):
        got = sorted(args) if isinstance(args, dict) else type(args).__name__
        raise ArchError(f"{where}: {kind} takes exactly the arguments {list(schema)}, got {got}")
    out = {name: check(args[name], f"{where}: {kind} {name}") for name, check in schema.items()}
    if kind.startswith("Conv"):
        groups = out["groups"]
        if out["in_channels"] % groups or out["out_channels"] % groups:
            raise ArchError(f"{where}: {kind} channels {out['in_channels']}, "
                            f"{out['out_channels']} are not multiples of groups={groups}")
        if out["padding"] == "same" and any(s != 1 for s in out["stride"]):
            raise ArchError(f"{where}: {kind} padding='same' needs stride 1")
    return out


def check_spec(spec, where: str = "architecture"):
    """Check a description (from a file) in full, without recursion; return it normalised."""
    # Explicit stack: a deeply nested file must not exhaust Python's recursion.
    root = {}
    stack = [(spec, 0, where, root, "spec")]
    count = 0
    while stack:
        node, depth, here, parent, key = stack.pop()
        count += 1
        if count > MAX_LAYERS:
            raise ArchError(f"{where}: more than {MAX_LAYERS} layers")
        if not isinstance(node, (list, tuple)) or len(node) != 2 or not isinstance(node[0], str):
            raise ArchError(f"{here}: a layer must be [type, arguments], got {_short(node)}")
        kind, args = node
        if kind == "Sequential":
            if depth >= MAX_DEPTH:
                raise ArchError(f"{here}: Sequential nested deeper than {MAX_DEPTH}")
            if not isinstance(args, (list, tuple)):
                raise ArchError(f"{here}: Sequential needs a list of children")
            children = [None] * len(args)
            parent[key] = ("Sequential", children)
            seen = set()
            for i, child in enumerate(args):
                if not isinstance(child, (list, tuple)) or len(child) != 2 \
                        or not isinstance(child[0], str):
                    raise ArchError(f"{here}: child {i} must be [name, layer]")
                name = child[0]
                if not name or "." in name or len(name) > _NAME_CHARS or name in seen:
                    raise ArchError(f"{here}: invalid or repeated child name {name!r}")
                seen.add(name)
                holder = {}
                children[i] = (name, holder)
                stack.append((child[1], depth + 1, f"{here}.{name}", holder, "spec"))
        elif kind in LAYERS:
            parent[key] = (kind, _check_args(kind, args, here))
        else:
            raise ArchError(f"{here}: {kind!r} is not a layer type a file may hold "
                            f"({', '.join(['Sequential', *LAYERS])})")
    return _resolve(root["spec"])


def _resolve(node):
    """Replace the holders filled above by their contents (iteratively)."""
    stack = [node]
    while stack:
        kind, args = stack.pop()
        if kind == "Sequential":
            for i, (name, holder) in enumerate(args):
                args[i] = (name, holder["spec"])
                stack.append(args[i][1])
    return node


def _short(value) -> str:
    text = repr(value)
    return text if len(text) < 60 else text[:57] + "..."


def _walk(spec, prefix=""):
    """(name prefix, kind, args) of each leaf layer, in module order."""
    stack = [(spec, prefix)]
    while stack:
        (kind, args), here = stack.pop()
        if kind == "Sequential":
            stack.extend((child, f"{here}{name}.") for name, child in reversed(args))
        else:
            yield here, kind, args


def state_shapes(spec) -> list[tuple[str, tuple[int, ...]]]:
    """The ``state_dict`` names and shapes of the model ``spec`` describes, in order."""
    out = []
    for here, kind, a in _walk(spec):
        if kind == "Linear":
            out.append((f"{here}weight", (a["out_features"], a["in_features"])))
            if a["bias"]:
                out.append((f"{here}bias", (a["out_features"],)))
        elif kind.startswith("Conv"):
            out.append((f"{here}weight", (a["out_channels"], a["in_channels"] // a["groups"],
                                          *a["kernel_size"])))
            if a["bias"]:
                out.append((f"{here}bias", (a["out_channels"],)))
        elif kind.startswith("BatchNorm"):
            n = a["num_features"]
            if a["affine"]:
                out += [(f"{here}weight", (n,)), (f"{here}bias", (n,))]
            if a["track_running_stats"]:
                out += [(f"{here}running_mean", (n,)), (f"{here}running_var", (n,)),
                        (f"{here}num_batches_tracked", ())]
    return out


def build(spec, state: dict) -> torch.nn.Module:
    """The model of a checked ``spec``, holding the tensors of ``state`` (names and shapes
    must be those of :func:`state_shapes`); built on the meta device, so nothing else is
    allocated."""
    with torch.device("meta"):
        model = _construct(spec)
    model.load_state_dict(state, assign=True)
    for name, t in [*model.named_parameters(), *model.named_buffers()]:
        if t.is_meta:   # every tensor must come from the file
            raise ArchError(f"the file holds no values for {name}")
    return model


def _construct(spec):
    kind, args = spec
    if kind == "Sequential":
        seq = torch.nn.Sequential()
        for name, child in args:
            seq.add_module(name, _construct(child))
        return seq
    return getattr(torch.nn, kind)(**args)
