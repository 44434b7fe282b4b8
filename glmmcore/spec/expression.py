"""Expressions evaluated on the data, as R evaluates them: code, not formula syntax.

lme4 evaluates some parts of a formula as R code on the data: the response
(``log(y)``, ``y - m``), each argument of ``cbind(successes, failures)``, the
inside of ``offset()``, a grouping factor written as a call (``factor(g)``)
and the ``weights =`` argument.  Here those places hold Python expressions
over the data's columns, evaluated as Python (``N - s`` subtracts; it does
not remove a term), in the namespace the fixed part has under formulaic:
the columns first, then ``np``/``numpy``, R's names of numpy's elementwise
functions (``log``, ``exp``, ``sqrt``, ...), ``I`` and ``C`` and formulaic's
stateful transforms (``scale``, ``center``, ``poly``, ...), whose state is kept
for new data.

``^`` is exclusive-or in Python, not a power as in R: ``I(x^2)`` would give a
silently wrong column, so it is refused wherever Python code is evaluated.
"""

from __future__ import annotations

import ast
import re
from typing import Any

import numpy as np
import pandas as pd

from ..errors import FormulaError

_BACKQUOTED = re.compile(r"`([^`]+)`")
# a column name as a formula writes it: an identifier, or R's dotted names (dose.1)
_PLAIN_NAME = re.compile(r"(?:[^\W\d]|\.)[\w.]*")

# R's names of numpy's elementwise functions (formulaic provides log, exp and their bases)
R_FUNCTIONS = {"log": np.log, "log2": np.log2, "log10": np.log10, "log1p": np.log1p,
               "exp": np.exp, "exp2": np.exp2, "expm1": np.expm1, "sqrt": np.sqrt}
MODULES = {"np": np, "numpy": np}


def _identity(x: Any) -> Any:
    return x


def _categorical(data: Any, contrasts: Any = None, *, levels: Any = None, **_: Any) -> Any:
    """``C(x, levels=...)`` outside a model matrix: x as a categorical with those levels."""
    values = data.array if isinstance(data, pd.Series) else data
    return pd.Categorical(values, categories=None if levels is None else list(levels))


def namespace() -> dict[str, Any]:
    """Names an expression can use besides the data's columns (formulaic's transforms too)."""
    import formulaic.transforms  # lazy: formulaic costs ~0.4 s to import

    names = dict(formulaic.transforms.TRANSFORMS)
    names.update(R_FUNCTIONS)
    names.update(MODULES)
    names.update(I=_identity, C=_categorical)
    return names


def formulaic_context() -> dict[str, Any]:
    """The extra names formulaic is given for the fixed part and random terms."""
    return {**R_FUNCTIONS, **MODULES}


def known_name(name: str) -> bool:
    """True for a name the namespace provides (a function or module, not a column)."""
    if name in R_FUNCTIONS or name in MODULES or name in ("I", "C"):
        return True
    import formulaic.transforms
    return name in formulaic.transforms.TRANSFORMS


def is_plain_name(expr: str) -> bool:
    """True for a bare column name (dots allowed, as in R: ``dose.1`` is a name, not code)."""
    return _PLAIN_NAME.fullmatch(expr) is not None


def _sanitize(expr: str) -> tuple[str, dict[str, str]]:
    """``expr`` with each backquoted name replaced by an identifier, and the map back."""
    aliases: dict[str, str] = {}

    def alias(match: re.Match) -> str:
        name = f"_bq{len(aliases)}_"
        aliases[name] = match.group(1)
        return name

    return _BACKQUOTED.sub(alias, expr), aliases


def parse_python(expr: str, formula: str | None = None,
                 span: tuple[int, int] | None = None) -> ast.Expression:
    """Parse an expression as Python, refusing ``^`` (exclusive-or, not R's power).

    A bare name (:func:`is_plain_name`) is a column and is not parsed.

    Raises
    ------
    FormulaError
        The expression is not Python, or uses ``^``; the message underlines ``span``.
    """
    if is_plain_name(expr.strip()):
        return ast.Expression(body=ast.Name(id=expr.strip(), ctx=ast.Load()))
    code, _ = _sanitize(expr)
    try:
        tree = ast.parse(code.strip(), mode="eval")
    except SyntaxError as exc:
        raise FormulaError(f"'{expr}' is not a valid expression ({exc.msg})",
                           formula, span) from None
    for node in ast.walk(tree):
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.BitXor):
            raise FormulaError(f"'^' in '{expr}' is Python's exclusive-or, not a power; "
                               "write '**' (x**2) for a power", formula, span)
    return tree


def free_names(expr: str) -> list[str]:
    """Names in ``expr`` that may be data columns, in first-use order.

    Names called as functions, modules used for their attributes (``np`` in
    ``np.log``) and names bound inside the expression are left out; whether a
    name is a column or a namespace name is decided against the data.
    """
    code, aliases = _sanitize(expr)
    tree = ast.parse(code.strip(), mode="eval")
    called: set[int] = set()
    bound: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            called.add(id(node.func))
        elif (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
              and node.value.id in MODULES):
            called.add(id(node.value))
        elif isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.arg):
            bound.add(node.arg)
    names: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Name) and id(node) not in called and node.id not in bound:
            name = aliases.get(node.id, node.id)
            if name not in names:
                names.append(name)
    return names


def called_names(expr: str) -> set[str]:
    """Names called as functions in ``expr`` (they never stand for columns)."""
    tree = ast.parse(_sanitize(expr)[0].strip(), mode="eval")
    return {node.func.id for node in ast.walk(tree)
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)}


def evaluate(expr: str, columns: dict[str, pd.Series], nrows: int,
             state: dict | None = None, formula: str | None = None) -> np.ndarray | Any:
    """The values of ``expr`` on the data: one value per row.

    Parameters
    ----------
    expr
        A Python expression of the columns.
    columns
        The columns it may use, as Series, by name.
    nrows
        Number of rows.
    state
        The state of the stateful transforms it calls (filled on first use,
        reused for new data).
    formula
        The whole formula, for messages.

    Returns
    -------
    numpy.ndarray or ExtensionArray
        One value per row.

    Raises
    ------
    FormulaError
        The expression cannot be evaluated, or does not give one value per row.
    """
    from formulaic.utils.stateful_transforms import stateful_eval

    env = namespace()
    calls = called_names(expr)
    env.update({name: values for name, values in columns.items() if name not in calls})
    try:
        with np.errstate(all="ignore"):
            value = stateful_eval(expr, env, None, {} if state is None else state, None)
    except FormulaError:
        raise
    except Exception as exc:  # any error of the user's code is a formula error  # noqa: BLE001
        reason = f"{type(exc).__name__}: {exc}"
        raise FormulaError(f"cannot evaluate '{expr}' on the data: {reason}{hint(reason)}",
                           formula) from None
    return _one_value_per_row(value, expr, nrows, formula)


def hint(reason: str) -> str:
    """The remedy for an unknown name in a formula's code."""
    if "NameError" not in reason:
        return ""
    return ("; a formula sees the data's columns, np/numpy, log, exp, sqrt and formulaic's "
            "transforms (scale, center, poly, ...): add other values to the data as columns")


def _one_value_per_row(value: Any, expr: str, nrows: int, formula: str | None) -> Any:
    if hasattr(value, "__formulaic_metadata__"):     # formulaic's wrapper of transform values
        value = value.__wrapped__
    if isinstance(value, pd.DataFrame):
        value = value.to_numpy() if value.shape[1] != 1 else value.iloc[:, 0]
    if isinstance(value, pd.Series):
        value = value.array
        if type(value).__name__ == "NumpyExtensionArray":
            value = value.to_numpy()
    elif not isinstance(value, (np.ndarray, pd.Categorical, pd.api.extensions.ExtensionArray)):
        value = np.asarray(value)
    shape = getattr(value, "shape", ())
    if len(shape) == 2 and shape[1] == 1:
        value = np.asarray(value)[:, 0]
        shape = value.shape
    if len(shape) == 2:
        raise FormulaError(f"'{expr}' gives {shape[1]} columns; one value per row is "
                           "needed here", formula)
    if len(shape) != 1 or shape[0] != nrows:
        what = "a single value" if len(shape) == 0 else f"{shape[0]} values"
        raise FormulaError(f"'{expr}' gives {what}; one value per row of the data "
                           f"({nrows}) is needed here", formula)
    return value
