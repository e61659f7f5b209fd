"""A safe calculator for tool calling: arithmetic by walking Python's syntax tree, never `eval`.

`eval("1234 * 5678")` would work, and so would `eval("__import__('os').system('rm -rf ~')")`: a model's
output (or a user's prompt injected into it) must never reach `eval`. `calculate` parses the text
with `ast.parse(mode="eval")` and evaluates only the node types it knows: number literals, unary
+/- and the binary operators + - * / // % **. Names, attributes, calls, subscripts, strings and
everything else raise `CalculatorError` saying what is not allowed. Arithmetic alone can still be a
denial of service (`9 ** 9 ** 9` has 370 million digits), so exponents and result sizes are bounded
*before* computing, and the expression's length is capped (which also bounds the tree's depth).

Reference: Python's `ast` module documentation (node types). Left out: functions (sqrt, sin),
variables, units, and exact decimals (floats behave as floats: 0.1 + 0.2 != 0.3).
"""

from __future__ import annotations

import ast
import math
import operator


class CalculatorError(ValueError):
    """An expression the safe calculator refuses or cannot evaluate."""


_BINARY = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.FloorDiv: operator.floordiv,
    ast.Mod: operator.mod,
    ast.Pow: operator.pow,
}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPRESSION_CHARS = 200  # also bounds the syntax tree's depth
MAX_EXPONENT = 1000  # |b| in a ** b
MAX_DIGITS = 1000  # results beyond 10**1000 are refused (a ** b is checked *before* it is computed)


def _too_big(x: float | int) -> bool:
    if isinstance(x, float):
        return not math.isfinite(x)
    return x != 0 and math.log10(abs(x)) > MAX_DIGITS


def _eval(node: ast.AST) -> int | float:
    if isinstance(node, ast.Expression):
        return _eval(node.body)
    if isinstance(node, ast.Constant):
        if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
            raise CalculatorError(f"only numbers are allowed, got {node.value!r}")
        return node.value
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_eval(node.operand))
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        a, b = _eval(node.left), _eval(node.right)
        if isinstance(node.op, ast.Pow):
            if abs(b) > MAX_EXPONENT:
                raise CalculatorError(f"exponent {b} is too large (limit {MAX_EXPONENT})")
            if abs(a) > 1 and b > 0 and b * math.log10(abs(a)) > MAX_DIGITS:
                raise CalculatorError(f"{a} ** {b} would have more than {MAX_DIGITS} digits")
            if a == 0 and b < 0:
                raise CalculatorError("zero cannot be raised to a negative power")
        try:
            out = _BINARY[type(node.op)](a, b)
        except ZeroDivisionError:
            raise CalculatorError("division by zero") from None
        except OverflowError:
            raise CalculatorError("the result is too large") from None
        if isinstance(out, complex):
            raise CalculatorError(
                "the result is not a real number (negative base, fractional exponent)"
            )
        if _too_big(out):
            raise CalculatorError(
                f"the result is too large (limit 10**{MAX_DIGITS}, finite floats)"
            )
        return out
    what = type(node).__name__
    hint = {
        "Name": "names/variables",
        "Attribute": "attributes",
        "Call": "function calls",
        "Subscript": "indexing",
    }.get(what, what)
    raise CalculatorError(f"{hint} are not allowed: only numbers, parentheses and + - * / // % **")


def calculate(expression: str) -> int | float:
    """Evaluate arithmetic safely (no `eval`): numbers, parentheses and + - * / // % ** only.

    >>> calculate("2 * (3 + 4) ** 2")
    98
    """
    if not isinstance(expression, str):
        raise CalculatorError(f"expression must be a string, got {type(expression).__name__}")
    expr = expression.strip().replace("^", "**").replace("×", "*").replace("÷", "/")
    if len(expr) > MAX_EXPRESSION_CHARS:
        raise CalculatorError(f"expression longer than {MAX_EXPRESSION_CHARS} characters")
    try:
        tree = ast.parse(expr, mode="eval")
    except (SyntaxError, ValueError) as e:  # ValueError: e.g. null bytes
        raise CalculatorError(f"not an arithmetic expression: {expression!r} ({e})") from None
    out = _eval(tree)
    return int(out) if isinstance(out, float) and out.is_integer() and abs(out) < 2**53 else out
