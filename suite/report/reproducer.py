"""Copy-paste Python snippets that show one measured point with torch alone.

A built-in case's ``description`` is the torch expression it evaluates (``F.kl_div(x, t)``); its free names,
in order of appearance, are the case's inputs in order.  The snippet binds them to tensors holding the
measured inputs, adds the reduction, runs backward for a gradient, and prints the value next to the exact
one.  A case whose description is not such an expression (a user's plugin) is called through the suite.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from suite.cases.base import Case

_MODULES = ("F", "torch")
#: Copies of the sample an unreduced snippet computes: a one-element tensor takes a CPU kernel's scalar path,
#: while the measured batch took its vectorised loop (two vectors a step, up to 64 16-bit lanes with AVX-512),
#: and the two can differ (the registry's ``cpu-vectorised-sigmoid-overflows-early``).
UNREDUCED_COPIES = 128
#: How a snippet stores an input ``v`` in a layout mode's memory layout (:func:`suite.modes.lay_out`).
_LAYOUTS = {"strided": "{v} = torch.stack([{v}.detach(), torch.zeros_like({v})], -1)[..., 0]"
                       ".requires_grad_({v}.requires_grad)  # every other element of a buffer",
            "transposed": "{v} = {v}.detach().mT.contiguous().mT.requires_grad_({v}.requires_grad)  # column-major"}


@dataclass(frozen=True)
class Point:
    """What a snippet reproduces: one element (``element`` within a row for row cases) of one quantity,
    with ``shape`` the batch shape to expand the sample to (None: the sample alone); an unreduced snippet shows
    the element of the first copy.  With ``batch``, ``inputs`` are whole tensors as nested lists (a reduced
    value of a drawn batch), used as they are."""

    inputs: Mapping[str, Any]
    dtype: str
    device: str
    mode: str
    reduction: str
    quantity: str
    element: int
    exact: float
    got: float
    torch_version: str
    shape: tuple[int, ...] | None = None
    batch: bool = False


def _expression(case: Case) -> tuple[ast.Expression, list[str]] | None:
    """The description parsed as a call of torch functions and its variable names in order, or None."""
    try:
        tree = ast.parse(case.description, mode="eval")
    except SyntaxError:
        return None
    if not isinstance(tree.body, ast.Call):
        return None
    names = sorted((n for n in ast.walk(tree) if isinstance(n, ast.Name)), key=lambda n: (n.lineno, n.col_offset))
    variables: list[str] = []
    for node in names:
        if node.id in _MODULES or node.id in variables:
            continue
        variables.append(node.id)
    roots = {node.id for node in names} - set(variables)
    if len(variables) != len(case.inputs) or not roots <= set(_MODULES):
        return None
    if any(k.arg == "reduction" for k in tree.body.keywords):
        return None
    return tree, variables


def _literal(value: float) -> str:
    if value != value:
        return 'float("nan")'
    if value in (float("inf"), float("-inf")):
        return 'float("inf")' if value > 0 else '-float("inf")'
    return repr(float(value))


def _nested(values: Any) -> str:
    """A nested list of floats as Python source (NaN and infinities spelt with ``float``)."""
    if isinstance(values, list | tuple):
        return f"[{', '.join(_nested(v) for v in values)}]"
    return _literal(values)


def _tensor(values: Any, dtype: str, device: str, rows: bool, shape: tuple[int, ...] | None,
            grad: bool) -> str:
    data = _nested(values)
    data = f"[{data}]" if rows else data
    where = "" if device == "cpu" else f", device={device!r}"
    text = f"torch.tensor({data}, dtype=torch.{dtype}{where})"
    if shape is not None:
        text += f".expand({', '.join(str(s) for s in shape)}).clone()"
    return text + (".requires_grad_()" if grad else "")


def _depth(values: Any) -> int:
    """Number of dimensions of a nested list."""
    return 1 + _depth(values[0]) if isinstance(values, list) and values else int(isinstance(values, list))


def _call_line(case: Case, variables: list[str], expression: ast.Expression | None, reduction: str,
               plugin: str | None) -> tuple[list[str], str]:
    """Imports and the expression computing the loss."""
    if expression is not None:
        call = expression.body
        assert isinstance(call, ast.Call)
        call.keywords.append(ast.keyword("reduction", ast.Constant(reduction)))
        return ["import torch", "import torch.nn.functional as F"], ast.unparse(expression)
    imports = ["import torch", *([f"import {plugin}  # registers the case"] if plugin else []),
               "from suite import cases"]
    tensors = ", ".join(f"{s.name!r}: {v}" for s, v in zip(case.inputs, variables, strict=True))
    return imports, f"cases.get({case.name!r}).forward({{{tensors}}}, {reduction!r})"


def snippet(case: Case, point: Point, plugin: str | None = None) -> str:
    """Python source that recomputes ``point`` with torch and prints it next to the exact value."""
    parsed = _expression(case)
    expression, variables = parsed if parsed else (None, [s.name.replace("-", "_") for s in case.inputs])
    imports, call = _call_line(case, variables, expression, point.reduction, plugin)
    grad_of = point.quantity.removeprefix("grad_") if point.quantity.startswith("grad_") else None
    lines = [*imports, ""]
    for spec, var in zip(case.inputs, variables, strict=True):
        rows = case.rows and spec.role == "data"
        shape = point.shape if spec.role == "data" else None
        values = point.inputs[spec.name] if point.batch else list(point.inputs[spec.name])
        rows = rows and not point.batch
        if point.mode == "strided" and spec.role == "data" and shape is None and not rows and len(values) == 1:
            values *= 2  # a one-element view is contiguous to torch, whatever its stride
        tensor = _tensor(values, point.dtype, point.device, rows, shape, spec.name == grad_of)
        lines.append(f"{var} = {tensor}")
        dims = len(shape) if shape is not None else (_depth(values) if point.batch else 1 + rows)
        if point.mode in _LAYOUTS and (point.mode == "strided" or dims >= 2):
            lines.append(_LAYOUTS[point.mode].format(v=var))
    device_type = point.device.split(":")[0]
    if point.mode == "autocast":
        lines.append(f"with torch.autocast({device_type!r}, dtype=torch.{point.dtype}):")
        lines.append(f"    loss = {call}")
    elif point.mode == "compile":
        lines.append(f"loss = torch.compile(lambda: {call})()")
    elif point.mode == "compile_dynamic":
        lines.append(f"loss = torch.compile(lambda: {call}, dynamic=True)()")
    else:
        lines.append(f"loss = {call}")
    if grad_of is not None:
        grad_var = variables[[s.name for s in case.inputs].index(grad_of)]
        lines.append("loss.backward(torch.ones_like(loss))")
        shown = f"{grad_var}.grad.flatten()[{point.element}].item()"
    else:
        shown = "loss.item()" if point.reduction != "none" else f"loss.flatten()[{point.element}].item()"
    lines.append(f"print({shown})  # exact: {point.exact!r}; torch {point.torch_version} "
                 f"{point.device} gave {point.got!r}")
    return "\n".join(lines) + "\n"
