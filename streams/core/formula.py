"""Rebate formulas from the rule file, evaluated without ``eval``.

A formula is parsed once with :mod:`ast` and only numbers, the variables the
caller allows, + - * / // % and the functions ``min``, ``max`` and ``floor``
are accepted; anything else (attributes, subscripts, calls to other names,
``**``) is refused when the rule file is loaded. Arithmetic is exact Decimal.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping
from decimal import Decimal, DivisionByZero, InvalidOperation

_BINARY: dict[type, Callable[[Decimal, Decimal], Decimal]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
}
_FUNCTIONS: dict[str, Callable[..., Decimal]] = {
    "min": min,
    "max": max,
    "floor": lambda value: Decimal(math.floor(value)),
}


class FormulaError(ValueError):
    """A formula that is not allowed, or that cannot be computed for these values."""


class Formula:
    """A parsed, checked arithmetic expression over named Decimal variables."""

    def __init__(self, text: str, variables: frozenset[str]) -> None:
        try:
            tree = ast.parse(text, mode="eval")
        except SyntaxError as exc:
            raise FormulaError(f"not an expression: {exc.msg}") from None
        self.text = text
        self._check(tree.body, variables)
        self._tree = tree.body

    def _check(self, node: ast.expr, variables: frozenset[str]) -> None:
        if isinstance(node, ast.Constant):
            if not isinstance(node.value, int | float) or isinstance(node.value, bool):
                raise FormulaError(f"only numbers are allowed, not {node.value!r}")
        elif isinstance(node, ast.Name):
            if node.id not in variables:
                raise FormulaError(f"unknown variable {node.id!r}; allowed: {', '.join(sorted(variables))}")
        elif isinstance(node, ast.BinOp):
            if type(node.op) not in _BINARY:
                raise FormulaError(f"operator {type(node.op).__name__} is not allowed")
            self._check(node.left, variables)
            self._check(node.right, variables)
        elif isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
            self._check(node.operand, variables)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _FUNCTIONS:
            if node.keywords or not node.args:
                raise FormulaError(f"{node.func.id}() takes positional arguments only")
            for arg in node.args:
                self._check(arg, variables)
        else:
            raise FormulaError(f"{ast.unparse(node)!r} is not allowed (only arithmetic on variables)")

    def __call__(self, values: Mapping[str, Decimal]) -> Decimal:
        try:
            return self._evaluate(self._tree, values)
        except (ZeroDivisionError, DivisionByZero, InvalidOperation) as exc:
            raise FormulaError(f"{self.text}: cannot compute ({type(exc).__name__})") from None

    def _evaluate(self, node: ast.expr, values: Mapping[str, Decimal]) -> Decimal:
        if isinstance(node, ast.Constant):
            return Decimal(str(node.value))
        if isinstance(node, ast.Name):
            return values[node.id]
        if isinstance(node, ast.BinOp):
            return _BINARY[type(node.op)](self._evaluate(node.left, values), self._evaluate(node.right, values))
        if isinstance(node, ast.UnaryOp):
            operand = self._evaluate(node.operand, values)
            return -operand if isinstance(node.op, ast.USub) else operand
        assert isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
        return _FUNCTIONS[node.func.id](*(self._evaluate(arg, values) for arg in node.args))
