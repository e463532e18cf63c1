"""Trace a model into operations for the dependency analysis: torch.fx first, torch.export after.

``torch.fx`` symbolic tracing is fast and keeps module calls, but cannot
follow Python control flow on tensor values or shapes (torch's own
``TransformerEncoderLayer`` branches on ``src.dim()``). ``torch.export``
follows such code for the example inputs and gives ATen operators; the calls
of modules that fx would keep whole (BatchNorm, attention) are gathered back
into one operation from the module stack each node records.
"""

from __future__ import annotations

import torch
import torch.fx as fx
from torch import nn

from dlkernels.compress._layouts import UngroupableError, pin_all
from dlkernels.compress._layer_rules import unknown_module
from dlkernels.compress._ops import ATEN, FUNCTIONS, LEAF_TYPES, module_rule
from dlkernels.compress._sequential import sequential_ops
from dlkernels.compress._values import Op, TensorMeta, Value, carries_units, fixed_like, tensors_in
from dlkernels.compress.depgraph import Graph

__all__ = ["analyse"]


class _Tracer(fx.Tracer):
    """fx tracing into every module but the leaf types; remembers where tracing failed."""

    def __init__(self):
        super().__init__()
        self.stack: list[tuple[str, str]] = []

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, LEAF_TYPES)

    def getattr(self, attr, attr_val, parameter_proxy_cache):
        # fx's own version scans every parameter and inspects a signature per look-up.
        names = self.__dict__.get("_names")
        if names is None:
            names = self._names = {id(t): n for n, t in [*self.root.named_parameters(),
                                                           *self.root.named_buffers()]}
        name = names.get(id(attr_val)) if isinstance(attr_val, torch.Tensor) else None
        if name is None:
            return attr_val
        if name not in parameter_proxy_cache:
            parameter_proxy_cache[name] = self.create_proxy("get_attr", name, (), {})
        return parameter_proxy_cache[name]

    def call_module(self, m, forward, args, kwargs):
        self.stack.append((self.path_of_module(m), type(m).__name__))
        out = super().call_module(m, forward, args, kwargs)
        self.stack.pop()
        return out


def describe(x):
    """A run's result as the analysis sees it: shapes for tensors, values for the rest."""
    if isinstance(x, torch.Tensor):
        return TensorMeta(tuple(x.shape))
    if isinstance(x, (tuple, list)) and not isinstance(x, torch.Size):
        return type(x)(describe(i) for i in x) if type(x) in (tuple, list) else tuple(describe(i) for i in x)
    return x


def _has_tensor(meta) -> bool:
    if isinstance(meta, TensorMeta):
        return True
    return isinstance(meta, (tuple, list)) and any(_has_tensor(m) for m in meta)


def dispatch(g: Graph, op: Op, rule, *extra):
    inputs = tensors_in(op.args) + tensors_in(op.kwargs)
    unpacking = op.name == "getitem" and isinstance(op.args[0], (tuple, list))
    for t in () if unpacking else inputs:
        if isinstance(t, Value):
            for space in t.taint:
                space.pin(f"{op.where} uses attention weights averaged over the heads")
    if not _has_tensor(op.out):
        return op.out
    if rule is None:
        if any(carries_units(t) for t in inputs):
            raise UngroupableError(f"{op.where}: this operation reads units, and how it mixes them "
                                   f"is not known")
        return fixed_like(op.out)
    return rule(g, op, *extra)


def _pin_outputs(values) -> None:
    for t in tensors_in(values):
        if isinstance(t, Value):
            for lay in t.layouts:
                pin_all(lay, "model output")


def _fetch(root: nn.Module, target: str):
    obj = root
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _example(example_inputs, root: nn.Module | None, graph: fx.Graph | None) -> tuple:
    if example_inputs is not None:
        items = example_inputs if isinstance(example_inputs, (tuple, list)) else (example_inputs,)
        if not all(isinstance(t, torch.Tensor) for t in items):
            raise TypeError(f"example_inputs must be a tensor or a tuple of tensors, got "
                            f"{type(example_inputs).__name__}")
        return tuple(items)
    placeholders = [] if graph is None else [n for n in graph.nodes if n.op == "placeholder"]
    first = next(iter(placeholders[0].users), None) if len(placeholders) == 1 else None
    kind = getattr(first.target, "__name__", "") if first is not None and first.op == "call_function" else ""
    if kind in ("linear", "embedding"):
        w = first.args[1] if len(first.args) > 1 else first.kwargs.get("weight")
        w = _fetch(root, w.target) if isinstance(w, fx.Node) and w.op == "get_attr" else None
        if isinstance(w, torch.Tensor) and kind == "linear":
            return (torch.zeros(2, w.shape[1], dtype=w.dtype, device=w.device),)
        if isinstance(w, torch.Tensor):
            return (torch.zeros(2, 1, dtype=torch.long, device=w.device),)
    raise TypeError("example_inputs: needed to learn the shapes of this model (pass a batch it accepts); "
                    "only models whose input goes straight into a Linear or Embedding can go without")


class _Recorder(fx.Interpreter):
    def __init__(self, root: nn.Module, graph: fx.Graph):
        super().__init__(root, graph=graph)
        self.meta: dict = {}

    def run_node(self, n):
        out = super().run_node(n)
        self.meta[n] = describe(out)
        return out


def _run_once(model: nn.Module, fn):
    """Run ``fn`` with the model in eval mode and no autograd; restore every module's mode."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.no_grad():
            return fn()
    finally:
        for m, mode in modes:
            m.training = mode


def _fx_ops(g: Graph, root: nn.Module, graph: fx.Graph, meta: dict) -> None:
    env = {}
    for node in graph.nodes:
        if node.op == "placeholder":
            m = meta.get(node)
            env[node] = Value.fixed(m.shape) if isinstance(m, TensorMeta) else m
            continue
        if node.op == "get_attr":
            obj = _fetch(root, node.target)
            ref = g.ref(obj) if isinstance(obj, torch.Tensor) else None
            env[node] = ref or (Value.fixed(tuple(obj.shape)) if isinstance(obj, torch.Tensor) else obj)
            continue
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        if node.op == "output":
            _pin_outputs(args)
            continue
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        if node.op == "call_module":
            module = root.get_submodule(node.target)
            op = Op(type(module).__name__, args, kwargs, meta[node], node.target)
            env[node] = dispatch(g, op, module_rule(module), module)
            continue
        name = node.target if node.op == "call_method" else getattr(node.target, "__name__", str(node.target))
        env[node] = dispatch(g, Op(name, args, kwargs, meta[node], path), FUNCTIONS.get(name))


def _trace_fx(model: nn.Module, example_inputs):
    tracer = _Tracer()
    try:
        graph = tracer.trace(model)
    except Exception as exc:  # any failure: fall back to torch.export
        where = tracer.stack[-1] if tracer.stack else ("", type(model).__name__)
        return None, where, exc
    inputs = _example(example_inputs, tracer.root, graph)
    rec = _Recorder(tracer.root, graph)
    try:
        _run_once(model, lambda: rec.run(*inputs))
    except Exception as exc:
        return None, ("", type(model).__name__), exc
    return (tracer.root, graph, rec.meta), None, None


def _owner(node, model, cache: dict):
    """(stack key, module path, module) of the outermost leaf-type module a node runs in."""
    for key, (path, _) in (node.meta.get("nn_module_stack") or {}).items():
        if path not in cache:
            try:
                cache[path] = model.get_submodule(path)
            except AttributeError:
                cache[path] = None
        if isinstance(cache[path], LEAF_TYPES):
            return key, path, cache[path]
    return None


def _export_ops(g: Graph, model: nn.Module, inputs: tuple) -> None:
    ep = torch.export.export(model, inputs, strict=False)
    sig = ep.graph_signature
    tensors = {**sig.inputs_to_parameters, **sig.inputs_to_buffers}
    nodes = list(ep.graph.nodes)
    cache: dict = {}
    owners = {n: _owner(n, model, cache) for n in nodes if n.op == "call_function"}
    members: dict = {}
    for n, o in owners.items():
        if o is not None:
            members.setdefault(o[0], []).append(n)
    last = {ns[-1]: key for key, ns in members.items()}
    user_outputs = set(sig.user_outputs)
    env = {}
    for node in nodes:
        m = describe(node.meta.get("val"))
        if node.op == "placeholder":
            if node.name in tensors:
                fqn = tensors[node.name]
                is_param = node.name in sig.inputs_to_parameters
                t = model.get_parameter(fqn) if is_param else model.get_buffer(fqn)
                env[node] = g.ref(t)
            else:
                env[node] = Value.fixed(m.shape) if isinstance(m, TensorMeta) else m
            continue
        if node.op == "output":
            _pin_outputs([env[n] for n in node.args[0] if isinstance(n, fx.Node) and n.name in user_outputs])
            continue
        if owners.get(node) is not None:
            if node in last:
                _collapsed(g, members[last[node]], owners[node], env, user_outputs)
            continue
        args = fx.node.map_arg(node.args, lambda n: env[n])
        kwargs = fx.node.map_arg(node.kwargs, lambda n: env[n])
        stack = node.meta.get("nn_module_stack") or {}
        path = list(stack.values())[-1][0] if stack else ""
        packet = getattr(node.target, "overloadpacket", None)
        name = (f"aten.{packet.__name__}" if packet is not None
                else getattr(node.target, "__name__", str(node.target)))
        env[node] = dispatch(g, Op(name, args, kwargs, m, path), ATEN.get(name))


def _collapsed(g: Graph, group: list, owner, env: dict, user_outputs: set) -> None:
    """One call of a leaf-type module, from the ATen nodes it ran."""
    _, path, module = owner
    inside = set(group)
    inputs = []
    for n in group:
        for a in n.all_input_nodes:
            if a not in inside and isinstance(env.get(a), Value) and a not in inputs:
                inputs.append(a)
    outputs = [n for n in group
               if any(u not in inside and (u.op != "output" or n.name in user_outputs) for u in n.users)]
    label = type(module).__name__
    rule = module_rule(module)
    if isinstance(module, nn.MultiheadAttention):
        if len(inputs) != 1 or len(outputs) != 1:
            raise UngroupableError(f"{path!r} ({label}): only self-attention whose weights are not "
                                   f"used can be followed through torch.export")
        x = env[inputs[0]]
        op = Op(label, (x, x, x), {}, (describe(outputs[0].meta["val"]), None), path)
        env[outputs[0]] = dispatch(g, op, rule, module)[0]
    elif len(outputs) == 1 or rule is unknown_module:
        op = Op(label, tuple(env[a] for a in inputs), {}, describe(outputs[0].meta["val"]), path)
        env[outputs[0]] = dispatch(g, op, rule, module)
        for n in outputs[1:]:
            env[n] = fixed_like(describe(n.meta["val"]))
    else:
        raise UngroupableError(f"{path!r} ({label}): a call with {len(outputs)} outputs cannot be "
                               f"followed")


def analyse(model: nn.Module, example_inputs=None) -> Graph:
    g = Graph(model)
    checked = None if example_inputs is None else _example(example_inputs, None, None)
    if sequential_ops(g, model, checked, lambda fn: _run_once(model, fn)):
        return g
    traced, where, fx_error = _trace_fx(model, example_inputs)
    if traced is not None:
        _fx_ops(g, *traced)
        return g
    if example_inputs is None:
        raise TypeError(f"model: torch.fx cannot trace {where[0] or 'the model'!r} ({where[1]}): "
                        f"{_first_line(fx_error)}; pass example_inputs=... to trace it with torch.export")
    inputs = _example(example_inputs, None, None)
    try:
        _export_ops(g, model, inputs)
    except UngroupableError:
        raise
    except Exception as exc:
        raise TypeError(f"model: cannot trace {where[0] or 'the model'!r} ({where[1]}): torch.fx: "
                        f"{_first_line(fx_error)}; torch.export: {_first_line(exc)}") from exc
    return g


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}"
