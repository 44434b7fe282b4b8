"""Parse lme4-style model formulas.

``y ~ x + (1 + x | g) + (1 | a/b) + offset(np.log(t))`` is split into its
response, its fixed-effects part (handed to formulaic, which understands
``a*b``, ``C(x)``, ``I(x**2)``, ``np.log(x)``, ``0 +``), its random-effects terms
and its offsets.  This stage only reads text; it does not look at data.

Grammar of a random-effects term, as in lme4::

    ( <expr> | <group> )      correlated random effects
    ( <expr> || <group> )     uncorrelated: one variance per column
    <group> := <factor> ( "/" <factor> )*      a/b means a and b:a (lme4 names)
    <factor> := <atom> ( ":" <atom> )*         interaction of grouping variables
    <atom> := <name> | `<any name>` | <call>    a call (``C(g)``, ``np.floor(x / 10)``)
                                                is evaluated on the data, as lme4 does

The response, each argument of ``cbind(...)`` and the inside of ``offset()``
are Python expressions evaluated on the data (:mod:`glmmcore.spec.expression`),
never formula syntax: ``cbind(s, N - s)`` has ``N - s`` failures.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from itertools import pairwise

from ..errors import FormulaError
from .expression import parse_python
from .model_matrix import parse_simple

# any identifier (non-ASCII letters too), R's dotted names, or a backquoted name
_NAME = re.compile(r"(?:[^\W\d]|\.)[\w.]*|`[^`]+`")
_OPEN = "([{"
_CLOSE = ")]}"
_QUOTES = "'\"`"


@dataclass(frozen=True)
class RandomTerm:
    """One random-effects term after expansion of ``a/b``.

    Attributes
    ----------
    expr
        The model formula of the term's columns (``"1 + x"``).
    group
        Names of the grouping variables; more than one means their interaction.
    uncorrelated
        True for ``||``: a separate variance for each column, no correlations.
    text
        The term as written in the formula (for messages and labels).
    span
        Character positions of ``text`` in the whole formula.
    calls
        The members of ``group`` written as calls (``C(g)``): evaluated on
        the data, where the others are column names.
    """

    expr: str
    group: tuple[str, ...]
    uncorrelated: bool
    text: str
    span: tuple[int, int]
    calls: frozenset[str] = frozenset()

    @property
    def group_name(self) -> str:
        """Label of the grouping factor as lme4 prints it (``a:b``)."""
        return ":".join(self.group)


@dataclass(frozen=True)
class ParsedFormula:
    """A formula split into its parts.

    Attributes
    ----------
    text
        The formula as given.
    response
        Expressions of the response: one, or two for ``cbind(successes, failures)``.
    fixed
        Right-hand side of the fixed effects, in formulaic syntax.
    random
        Random-effects terms, in formula order, ``a/b`` expanded.
    offsets
        Expressions inside ``offset(...)`` terms.
    """

    text: str
    response: tuple[str, ...]
    fixed: str
    random: tuple[RandomTerm, ...]
    offsets: tuple[str, ...]

    @property
    def is_cbind(self) -> bool:
        """True for a ``cbind(successes, failures)`` response."""
        return len(self.response) == 2


def parse_formula(text: str) -> ParsedFormula:
    """Parse an lme4-style formula.

    Parameters
    ----------
    text
        The formula, e.g. ``"y ~ x + (1 + x | g)"``.

    Returns
    -------
    ParsedFormula

    Raises
    ------
    FormulaError
        Quoting the formula and underlining the part that does not parse.
    """
    if not isinstance(text, str):
        raise FormulaError(f"a formula must be a string, not {type(text).__name__}")
    if not text.strip():
        raise FormulaError("the formula is empty")
    _check_balanced(text)
    tildes = [i for i in _top_level_positions(text, "~")]
    if len(tildes) != 1:
        what = "no '~'" if not tildes else "more than one '~'"
        span = (tildes[1], tildes[1] + 1) if len(tildes) > 1 else None
        raise FormulaError(f"a formula needs exactly one '~' between response and "
                           f"predictors; found {what}", text, span)
    tilde = tildes[0]
    response = _parse_response(text, tilde)
    rhs_start = tilde + 1
    if not text[rhs_start:].strip():
        raise FormulaError("nothing on the right of '~'", text, (tilde, tilde + 1))
    fixed_parts: list[tuple[str, str]] = []
    randoms: list[RandomTerm] = []
    offsets: list[str] = []
    for sign, start, end in _split_terms(text, rhs_start):
        piece = text[start:end]
        if _is_bar_term(piece):
            if sign != "+":
                raise FormulaError("a random-effects term cannot be subtracted", text, (start, end))
            randoms.extend(_parse_bar_term(text, start, end))
        elif _is_call(piece, "offset"):
            if sign != "+":
                raise FormulaError("an offset cannot be subtracted", text, (start, end))
            inner = piece[len("offset("):-1].strip()
            if not inner:
                raise FormulaError("offset() needs an expression", text, (start, end))
            parse_python(inner, text, (start, end))
            offsets.append(inner)
        else:
            bar = next(iter(_top_level_positions(piece, "|")), None)
            if bar is not None:
                raise FormulaError("a random-effects term must be in parentheses, as in "
                                   "'(1 | g)'", text, (start, end))
            fixed_parts.append((sign, piece))
    fixed = _join_fixed(fixed_parts)
    _check_formulaic(fixed, text, (rhs_start, len(text)))
    return ParsedFormula(text=text, response=response, fixed=fixed,
                         random=tuple(randoms), offsets=tuple(offsets))


def _parse_response(text: str, tilde: int) -> tuple[str, ...]:
    lhs = text[:tilde]
    expr = lhs.strip()
    if not expr:
        raise FormulaError("the formula has no response on the left of '~'", text, (0, tilde + 1))
    start = lhs.index(expr[0])
    span = (start, start + len(expr))
    if _is_call(expr, "cbind"):
        args = _split_args(expr[len("cbind("):-1])
        if len(args) != 2 or not all(args):
            raise FormulaError("cbind() in the response takes exactly two expressions: "
                               "successes and failures", text, span)
        for arg in args:
            parse_python(arg, text, span)
        return tuple(args)
    parse_python(expr, text, span)
    return (expr,)


def _join_fixed(parts: list[tuple[str, str]]) -> str:
    if not parts:
        return "1"
    out = []
    for i, (sign, piece) in enumerate(parts):
        if i == 0:
            out.append(piece if sign == "+" else f"-{piece}")
        else:
            out.append(f" {sign} {piece}")
    return "".join(out)


def _check_formulaic(expr: str, text: str, span: tuple[int, int]) -> None:
    if parse_simple(expr) is not None:   # names, 1/0, +, two-way products: valid
        return
    # formulaic costs ~0.4 s to import: only formulas the fast path cannot read pay it
    from formulaic import Formula
    from formulaic.errors import FormulaicError
    try:
        terms = list(Formula(expr))
    except (FormulaicError, SyntaxError, ValueError) as exc:
        reason = str(exc).splitlines()[0]
        if "`.` operator" in reason:
            reason = "'.' (every other column) is not supported; name the predictors"
        raise FormulaError(f"cannot parse '{expr}': {reason}", text, span) from None
    for term in terms:
        for factor in term.factors:
            if factor.eval_method.value == "python":
                parse_python(factor.expr, text, span)


def _parse_bar_term(text: str, start: int, end: int) -> list[RandomTerm]:
    piece = text[start:end]
    inner = piece[1:-1]
    bars = list(_top_level_positions(inner, "|"))
    double = len(bars) == 2 and bars[1] == bars[0] + 1
    if not bars or (len(bars) > 1 and not double) or len(bars) > 2:
        raise FormulaError("a random-effects term has one '|' or '||'", text, (start, end))
    lhs = inner[:bars[0]].strip()
    rhs = inner[bars[-1] + 1:].strip()
    if not lhs:
        raise FormulaError("the random-effects term has nothing before the bar; write "
                           "'(1 | g)' for a random intercept", text, (start, end))
    if not rhs:
        raise FormulaError("the random-effects term has no grouping factor after the bar",
                           text, (start, end))
    _check_formulaic(lhs, text, (start, end))
    groups, calls = _parse_group(rhs, text, (start, end))
    return [RandomTerm(expr=lhs, group=g, uncorrelated=double, text=piece.strip(),
                       span=(start, end), calls=calls.intersection(g)) for g in groups]


def _parse_group(rhs: str, text: str,
                 span: tuple[int, int]) -> tuple[list[tuple[str, ...]], frozenset[str]]:
    """The grouping factors of ``a/b`` (lme4's order and names) and the atoms that are calls."""
    nested: list[tuple[str, ...]] = []
    calls: set[str] = set()
    for level in split_top_level(rhs, "/"):
        names = []
        for name in split_top_level(level, ":"):
            if _NAME.fullmatch(name):
                names.append(name.strip("`"))
            elif _is_group_call(name, text, span):
                calls.add(name)
                names.append(name)
            else:
                raise FormulaError(f"the grouping factor '{rhs}' must be variable names or "
                                   f"calls such as C(g), joined by ':' or '/'; '{name}' is "
                                   "not a name", text, span)
        nested.append(tuple(names))
    # lme4 names the nested factor of a/b 'b:a' (inner first)
    return ([tuple(n for level in reversed(nested[:depth]) for n in level)
             for depth in range(1, len(nested) + 1)], frozenset(calls))


def split_top_level(text: str, sep: str) -> list[str]:
    """``text`` split at the ``sep`` characters outside brackets and quotes, stripped."""
    cuts = [-1, *_top_level_positions(text, sep), len(text)]
    return [text[a + 1:b].strip() for a, b in pairwise(cuts)]


def _is_group_call(atom: str, text: str, span: tuple[int, int]) -> bool:
    """True for a call such as ``C(g)`` or ``np.floor(x / 10)`` (checked as Python)."""
    if not atom or not _NAME.match(atom) or not atom.endswith(")"):
        return False
    tree = parse_python(atom, text, span)
    return isinstance(tree.body, ast.Call)


def _is_bar_term(piece: str) -> bool:
    piece = piece.strip()
    if not (piece.startswith("(") and _matching_close(piece, 0) == len(piece) - 1):
        return False
    return next(iter(_top_level_positions(piece[1:-1], "|")), None) is not None


def _is_call(piece: str, name: str) -> bool:
    piece = piece.strip()
    head = f"{name}("
    return piece.startswith(head) and _matching_close(piece, len(name)) == len(piece) - 1


def _split_args(text: str) -> list[str]:
    cuts = [-1, *_top_level_positions(text, ","), len(text)]
    return [text[a + 1:b].strip() for a, b in pairwise(cuts)]


def _split_terms(text: str, start: int) -> list[tuple[str, int, int]]:
    """Split text[start:] at top-level '+' and '-' into (sign, start, end) pieces."""
    pieces: list[tuple[str, int, int]] = []
    sign, piece_start = "+", start
    for pos in _top_level_positions(text, "+-", start):
        if _in_number(text, pos):
            continue
        _add_piece(pieces, text, sign, piece_start, pos, first=piece_start == start)
        sign, piece_start = text[pos], pos + 1
    _add_piece(pieces, text, sign, piece_start, len(text), first=piece_start == start)
    return pieces


def _add_piece(pieces: list, text: str, sign: str, start: int, end: int, first: bool) -> None:
    stripped = text[start:end].strip()
    if not stripped:
        if first and end < len(text):  # a leading sign, as in '-1 + x'
            return
        raise FormulaError("an operator is missing an argument", text,
                           (max(start - 1, 0), max(end, start)))
    offset = text[start:end].index(stripped[0])
    pieces.append((sign, start + offset, start + offset + len(stripped)))


def _in_number(text: str, pos: int) -> bool:
    # '1e-3': the sign belongs to a number's exponent, not to the formula
    return (pos >= 2 and text[pos - 1] in "eE" and text[pos - 2].isdigit()
            and pos + 1 < len(text) and text[pos + 1].isdigit())


def _scan(text: str, start: int = 0, wanted: str = ""):
    """Yield (position, character, depth) of the brackets and ``wanted`` characters outside quotes.

    ``depth`` counts the brackets open before the character (an opening
    bracket is reported at the depth outside it, a closing one inside it).
    Only quotes, brackets and ``wanted`` can change or use the state, so the
    scan jumps from one to the next (a regular expression finds them) instead
    of stepping through every character.
    """
    depth, quote = 0, None
    for match in _special(wanted).finditer(text, start):
        pos = match.start()
        ch = text[pos]
        if quote:
            if ch == quote:
                quote = None
        elif ch in _QUOTES:
            quote = ch
        else:
            yield pos, ch, depth
            if ch in _OPEN:
                depth += 1
            elif ch in _CLOSE:
                depth -= 1


def _special(wanted: str) -> re.Pattern:
    """Pattern of one quote, bracket or ``wanted`` character."""
    pattern = _SPECIAL.get(wanted)
    return pattern if pattern is not None else _special_pattern(wanted)


def _special_pattern(wanted: str) -> re.Pattern:
    return re.compile(f"[{re.escape(_QUOTES + _OPEN + _CLOSE + wanted)}]")


# compiled once for the characters the parser looks for (read-only after import)
_SPECIAL = {wanted: _special_pattern(wanted)
            for wanted in ("", "~", "|", ",", "+-", "/", ":")}


def _top_level_positions(text: str, chars: str, start: int = 0):
    for pos, ch, depth in _scan(text, start, chars):
        if depth == 0 and ch in chars:
            yield pos


def matching_close(text: str, open_pos: int) -> int:
    """Position of the bracket closing the one at ``open_pos`` (-1: none)."""
    return _matching_close(text, open_pos)


def _matching_close(text: str, open_pos: int) -> int:
    for pos, ch, depth in _scan(text, open_pos):
        if ch in _CLOSE and depth == 1:
            return pos
    return -1


def _check_balanced(text: str) -> None:
    stack: list[int] = []
    quote, quote_pos = None, 0
    for match in _special("").finditer(text):
        pos, ch = match.start(), match.group()
        if quote:
            if ch == quote:
                quote = None
        elif ch in _QUOTES:
            quote, quote_pos = ch, pos
        elif ch in _OPEN:
            stack.append(pos)
        elif ch in _CLOSE:
            if not stack or _OPEN.index(text[stack[-1]]) != _CLOSE.index(ch):
                raise FormulaError(f"unbalanced '{ch}'", text, (pos, pos + 1))
            stack.pop()
    if quote:
        raise FormulaError("unterminated quote", text, (quote_pos, quote_pos + 1))
    if stack:
        raise FormulaError(f"unclosed '{text[stack[-1]]}'", text, (stack[-1], stack[-1] + 1))
