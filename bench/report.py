"""The results table (fixed width, markdown-compatible) and the JSON file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from .workloads import reference

REL_TOL = 1e-6   # a fit counts only if glmmcore's logLik >= peer's - REL_TOL * |peer's|
PEERS = ("lme4", "mixedlm")

COLUMNS = ("workload", "size", "nobs", "glmmcore s", "1st fit s", "peak MB", "logLik",
           "lme4 s", "lme4 x", "dLL lme4", "mixedlm s", "mixedlm x", "dLL mixedlm", "notes")


def fmt_seconds(x: float | None) -> str:
    """Seconds with about three significant digits, never in exponent form."""
    if x is None or not math.isfinite(x):
        return "-"
    if x >= 100:
        return f"{x:.0f}"
    if x >= 10:
        return f"{x:.1f}"
    if x >= 1:
        return f"{x:.2f}"
    if x >= 0.1:
        return f"{x:.3f}"
    return f"{x:.4f}"


def loglik_check(record: dict[str, Any], peer: str) -> dict[str, Any] | None:
    """glmmcore's logLik minus the peer's, and whether glmmcore's fit counts against it.

    None when either fit is missing; ``comparable`` is False (with a reason) when the two
    log-likelihoods do not measure the same thing.
    """
    gc, other = record["glmmcore"], record[peer]
    if gc.get("status") != "ok" or other.get("status") != "ok":
        return None
    if peer == "lme4" and record["nAGQ"] > 1:
        return {"comparable": False, "reason": "lme4's nAGQ>1 logLik omits constants"}
    if peer == "lme4" and record["family"] == "gamma":
        return {"comparable": False,
                "reason": "lme4's Gamma logLik is not a true log-likelihood (reference: glmmTMB)"}
    if gc.get("nobs") != other.get("nobs"):
        return {"comparable": False,
                "reason": f"nobs differ ({gc.get('nobs')} vs {other.get('nobs')})"}
    diff = gc["loglik"] - other["loglik"]
    ok = gc["loglik"] >= other["loglik"] - REL_TOL * abs(other["loglik"])
    return {"comparable": True, "diff": diff, "ok": ok}


class _Notes:
    """Footnotes, numbered in order of first use."""

    def __init__(self) -> None:
        self.items: list[str] = []

    def ref(self, text: str) -> str:
        if text not in self.items:
            self.items.append(text)
        return f"[{self.items.index(text) + 1}]"


def _status_cell(result: dict[str, Any], who: str, notes: _Notes) -> str:
    status = result.get("status", "skipped")
    return f"{status}{notes.ref(f'{who} {status}: ' + result.get('message', status))}"


def _peer_cells(record: dict[str, Any], peer: str, notes: _Notes) -> list[str]:
    res, gc = record[peer], record["glmmcore"]
    if res.get("status") != "ok":
        return [_status_cell(res, peer, notes), "", ""]
    ratio = ""
    if gc.get("status") == "ok" and gc["seconds"] > 0:
        ratio = f"{res['seconds'] / gc['seconds']:.1f}x"
    check = loglik_check(record, peer)
    if check is None:
        dll = f"({res['loglik']:.2f})"
    elif not check["comparable"]:
        dll = "n/c" + notes.ref(check["reason"])
    else:
        dll = f"{check['diff']:+.3f}" + ("" if check["ok"] else " **LOW**")
    return [fmt_seconds(res["seconds"]), ratio, dll]


def _row(record: dict[str, Any], notes: _Notes) -> list[str]:
    gc, fresh = record["glmmcore"], record["glmmcore"].get("fresh", {})
    nobs = gc.get("nobs") or record.get("nrows")
    cells = [record["name"], record["size"], f"{nobs:,}" if nobs else ""]
    if gc.get("status") == "ok":
        cells.append(fmt_seconds(gc["seconds"]))
        if fresh.get("status") == "ok":
            cells += [fmt_seconds(fresh["first_fit"]), f"{fresh['peak_mb']:.0f}"]
        else:
            cells += [_status_cell(fresh, "glmmcore fresh process", notes), ""]
        cells.append(f"{gc['loglik']:.3f}")
    else:
        cells += [_status_cell(gc, "glmmcore", notes), "", "", ""]
    for peer in PEERS:
        cells += _peer_cells(record, peer, notes)
    extra = []
    tmb = reference().get(record["name"], {}).get("glmmTMB_logLik")
    if tmb is not None and gc.get("status") == "ok":
        extra.append(f"vs glmmTMB {gc['loglik'] - tmb:+.3f}")
    for who in ("glmmcore", *PEERS):
        res = record[who]
        if res.get("status") == "ok" and len(res.get("times", [])) < record["repeat"]:
            extra.append(f"{who} n={len(res['times'])}")
        if res.get("status") == "ok" and res.get("converged") is False:
            extra.append(f"{who} not converged")
    cells.append(", ".join(extra))
    return cells


def table(records: list[dict[str, Any]]) -> str:
    """The results as a fixed-width markdown table, footnotes and logLik violations below."""
    notes = _Notes()
    rows = [_row(r, notes) for r in records]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    right = {2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}

    def line(cells: list[str] | tuple[str, ...]) -> str:
        padded = [c.rjust(w) if i in right else c.ljust(w)
                  for i, (c, w) in enumerate(zip(cells, widths))]
        return "| " + " | ".join(padded) + " |"

    rule = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2))
                          for i, w in enumerate(widths)) + "|"
    out = [line(COLUMNS), rule, *(line(r) for r in rows)]
    low = [f"{r['name']} vs {p}: glmmcore {r['glmmcore']['loglik']:.6f} < "
           f"{p} {r[p]['loglik']:.6f}"
           for r in records for p in PEERS
           if (c := loglik_check(r, p)) and c.get("comparable") and not c["ok"]]
    if low:
        out += ["", "**logLik below a peer's (fit does not count):**", ""]
        out += [f"- {text}" for text in low]
    if notes.items:
        out += ["", *(f"[{i + 1}] {text}  " for i, text in enumerate(notes.items))]
    return "\n".join(out)


def environment_lines(meta: dict[str, Any]) -> str:
    """Date, machine and versions as a short markdown list."""
    v = meta["versions"]
    return "\n".join([
        f"- date: {meta['date']}",
        f"- machine: {meta['nproc']} cores (nproc), {meta['cpu']}, {meta['platform']}",
        "- software: " + ", ".join(f"{k} {val}" for k, val in v.items()),
        f"- glmmcore tree: {meta['git']}",
        "- load average (1 min) at start / end: "
        + " / ".join(f"{meta[k][0]:.2f}" if k in meta else "?"
                     for k in ("loadavg_start", "loadavg_end")),
        f"- protocol: {meta['repeat']} warm repetitions (fewer when they would exceed "
        f"{meta['budget']:.0f} s), peers {'on' if meta['peers'] else 'off'}",
    ])


def read_json(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Meta data and records of a results file."""
    doc = json.loads(path.read_text())
    return doc["meta"], doc["results"]


def write_json(path: Path, meta: dict[str, Any], records: list[dict[str, Any]]) -> None:
    """All results (and the checks behind the table) as JSON."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for r in records:
        r["loglik_checks"] = {p: loglik_check(r, p) for p in PEERS}
    tmp = path.with_name(path.stem + ".partial.json")
    tmp.write_text(json.dumps({"meta": meta, "results": records}, indent=1, default=str))
    tmp.replace(path)
