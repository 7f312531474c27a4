"""One self-contained HTML page for a synthesis result.

In: a `SynthesisResult` (read as data: its IR, source, verdict and report;
this module never calls the search). Out: HTML text that opens offline (no
scripts, styles inline, the graph as inline SVG) holding:
- the verdict: verified or not, the certificate (every input, or the
  probes), agreement, probes, time against budget;
- the recovered program's Python source;
- its dataflow graph by layer (`circuit.circuit_svg`), coloured by origin
  and confidence;
- per op: kind, inputs, origin, confidence and how it was found; its
  function as an expression and as a table over its input values; a
  Select's predicate as a heatmap over query x key values.
Value sets are tracr's (`program.canonical.value_sets`) for the model's
vocabulary and max_seq_len, as recorded in the report.
"""

from __future__ import annotations

import html
from collections.abc import Hashable, Mapping
from typing import Any

from raspsynth.program.canonical import apply_ignoring_errors, function_of, select_predicate, value_sets
from raspsynth.program.ir import PREDICATE_ARGUMENTS, Op, Program
from raspsynth.report.circuit import ORIGIN_COLOURS, circuit_svg, node_id, op_sublayers, sublayer_name

MAX_TABLE_ROWS = 64  # a Map's table
MAX_GRID = 24  # a SequenceMap's or Select's values per axis

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2em auto; max-width: 1100px;
       color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; }
h2 { font-size: 1.2em; border-bottom: 1px solid #ddd; padding-bottom: 0.2em; margin-top: 1.6em; }
h3 { font-size: 1.05em; margin-bottom: 0.3em; }
pre { background: #f6f8fa; padding: 0.8em; overflow-x: auto; font-size: 0.85em; border-radius: 4px; }
code { font-size: 0.9em; }
.verdict { display: inline-block; padding: 0.2em 0.7em; border-radius: 4px; color: white; font-weight: 600; }
.ok { background: #2e7d32; } .bad { background: #c62828; }
table { border-collapse: collapse; font-size: 0.85em; margin: 0.4em 0; }
td, th { border: 1px solid #ccc; padding: 0.15em 0.45em; text-align: center; }
th { background: #f0f0f0; }
table.facts td, table.facts th { text-align: left; }
.op-section { border: 1px solid #e3e3e3; border-radius: 6px; padding: 0.2em 1em 0.8em; margin: 0.8em 0; }
.swatch { display: inline-block; width: 0.9em; height: 0.9em; border-radius: 2px; vertical-align: middle; }
.heat td { width: 1.4em; height: 1.4em; padding: 0; }
.heat td.on { background: #4C78A8; } .heat td.off { background: #fafafa; }
.note { color: #666; font-size: 0.85em; }
figure { margin: 0; overflow-x: auto; }
"""


def render_html(result: Any, title: str | None = None) -> str:
    """The report page for `result` (a `SynthesisResult`)."""
    report: Mapping[str, Any] = result.report
    program: Program | None = result.ir
    model = report.get("model", {})
    title = title or "raspsynth: recovered program"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_e(title)}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
        _verdict(result, report),
    ]
    if program is None:
        parts.append("<p>No program was found.</p>")
    else:
        ops = {entry["op"]: entry for entry in report.get("ops", [])}
        expressions = report.get("expressions", {})
        vocab, max_seq_len = model.get("vocab", []), model.get("max_seq_len", 0)
        sets = value_sets(program, vocab, max_seq_len)
        sublayers = op_sublayers(program, vocab, max_seq_len)
        parts += [
            "<h2>Program</h2>",
            f"<pre><code>{_e(result.source)}</code></pre>",
            "<h2>Circuit</h2>",
            _circuit(program, sublayers, ops, expressions),
            "<h2>Operations</h2>",
        ]
        for op in program.ops:
            parts.append(
                _op_section(op, ops.get(op.name, {}), expressions.get(op.name), sets, sublayers, program)
            )
    parts.append(_details(report))
    parts.append("</body></html>")
    return "\n".join(parts)


def _e(value: Any) -> str:
    return html.escape(str(value))


def _verdict(result: Any, report: Mapping[str, Any]) -> str:
    certificate = getattr(result, "certificate", report.get("certificate", "none"))
    meaning = {
        "exhaustive": "every input of the model's vocabulary and length was run",
        "sampled": "checked on the probe inputs only (too many inputs to run them all)",
        "isomorphic": "the recompiled weights equal the model's up to a change of basis: every input",
        "none": "not verified",
    }.get(certificate, certificate)
    badge = (
        '<span class="verdict ok">verified</span>'
        if result.verified
        else '<span class="verdict bad">not verified</span>'
    )
    model = report.get("model", {})
    rows = [
        ("verdict", f"{badge}"),
        ("certificate", f"<b>{_e(certificate)}</b>: {_e(meaning)}"),
        ("agreement", f"{result.agreement:.4f} of probe inputs"),
        ("verification", _e(report.get("verification", ""))),
        ("probes", _e(report.get("probes", "-"))),
        ("time", f"{report.get('elapsed_s', 0.0):.2f} s of a {report.get('budget_s', 0):g} s budget"),
        ("mode", _e(report.get("mode", ""))),
    ]
    if model:
        rows.append(
            (
                "model",
                _e(
                    f"{model.get('layers')} layers, {model.get('heads')} heads, "
                    f"d_model {model.get('d_model')}, "
                    f"vocab {model.get('vocab')}, max_seq_len {model.get('max_seq_len')}, "
                    f"{model.get('output')} output"
                ),
            )
        )
    if report.get("reason"):
        rows.append(("weights", _e(report["reason"])))
    body = "".join(f"<tr><th>{k}</th><td>{v}</td></tr>" for k, v in rows)
    return f'<table class="facts">{body}</table>'


def _short(op: Op, expression: str | None) -> str:
    """A node's second line: what the op computes, briefly."""
    if op.kind == "select":
        if op.fn is None:
            return f"select {op.comparison}"
        text = (expression or op.fn.source(PREDICATE_ARGUMENTS)).split(":", 1)[-1].strip()
        return text if len(text) <= 22 else text[:20] + "…"
    if op.kind == "aggregate":
        return f"aggregate ({op.encoding[:3]})"
    if op.kind == "selector_width":
        return "selector width"
    if op.kind == "linear_sequence_map":
        a, b = op.coefficients
        return f"{a:g}x + {b:g}y"
    text = expression.removeprefix("lambda ").split(":", 1)[-1].strip() if expression else op.fn.describe()
    return text if len(text) <= 22 else text[:20] + "…"


def _circuit(
    program: Program, sublayers: Mapping[str, int], ops: Mapping[str, Mapping], expressions: Mapping[str, str]
) -> str:
    origins = {
        name: (entry.get("from", "search"), entry.get("confidence", 0.0)) for name, entry in ops.items()
    }
    labels = {op.name: _short(op, expressions.get(op.name)) for op in program.ops}
    tooltips = {
        op.name: f"{op.name} = {op.kind}({', '.join(op.inputs)}); from {origins.get(op.name, ('?', 0))[0]}, "
        f"confidence {origins.get(op.name, ('?', 0.0))[1]:.2f}"
        for op in program.ops
    }
    svg = circuit_svg(program, sublayers, origins, labels, tooltips)
    legend = " ".join(
        f'<span class="swatch" style="background:{c}"></span> {o}' for o, c in ORIGIN_COLOURS.items()
    )
    return (
        f"<figure>{svg}</figure>"
        f'<p class="note">Columns are the sublayers tracr compiles the ops into. '
        f"Colour: {legend}; opacity: confidence. Click a node for its section.</p>"
    )


def _op_section(
    op: Op,
    entry: Mapping[str, Any],
    expression: str | None,
    sets: Mapping[str, frozenset],
    sublayers: Mapping[str, int],
    program: Program,
) -> str:
    ident = node_id(op.name)
    origin = entry.get("from", "?")
    colour = ORIGIN_COLOURS.get(origin, "#999")
    facts = [
        ("kind", op.kind + ("" if op.kind == "select" else f" ({op.encoding})")),
        ("inputs", ", ".join(op.inputs)),
        ("sublayer", sublayer_name(sublayers[op.name])),
        ("origin", f'<span class="swatch" style="background:{colour}"></span> {_e(origin)}'),
        ("confidence", f"{entry.get('confidence', 0.0):.2f}"),
        ("how", _e(entry.get("how", ""))),
    ]
    body = [f"<h3>{_e(op.name)}{' (output)' if op.name == program.output else ''}</h3>"]
    body.append(
        '<table class="facts">'
        + "".join(f"<tr><th>{k}</th><td>{v if k in ('origin', 'how') else _e(v)}</td></tr>" for k, v in facts)
        + "</table>"
    )
    if op.kind in ("map", "sequence_map"):
        if expression:
            body.append(f"<p>expression: <code>{_e(expression)}</code> (equal to the table below)</p>")
        elif op.fn.name != "table":
            body.append(f"<p>function: <code>{_e(op.fn.source())}</code></p>")
        else:
            body.append("<p>function: an exact table (no shorter expression found)</p>")
    if op.kind == "linear_sequence_map":
        a, b = op.coefficients
        body.append(f"<p>function: <code>{a!r} * x + {b!r} * y</code></p>")
    if op.kind == "map":
        body.append(_map_table(op, sorted_values(sets[op.inputs[0]])))
    elif op.kind in ("sequence_map", "linear_sequence_map"):
        body.append(_grid(op, sorted_values(sets[op.inputs[0]]), sorted_values(sets[op.inputs[1]])))
    elif op.kind == "select":
        body.append(_heatmap(op, sorted_values(sets[op.inputs[1]]), sorted_values(sets[op.inputs[0]])))
    elif op.kind == "aggregate":
        selector, value = op.inputs
        what = "the mean of" if op.encoding == "numerical" else "the value (all selected agree) of"
        body.append(
            f"<p>each query position takes {what} <code>{_e(value)}</code> over the keys "
            f"<code>{_e(selector)}</code> selects.</p>"
        )
    else:
        body.append(f"<p>each query position counts the keys <code>{_e(op.inputs[0])}</code> selects.</p>")
    return f'<section class="op-section" id="sec-{ident}">' + "".join(body) + "</section>"


def sorted_values(values: frozenset) -> list[Hashable]:
    """Values in a stable, readable order: numbers first, ascending, then the rest."""
    return sorted(
        values,
        key=lambda v: (not isinstance(v, int | float), v if isinstance(v, int | float) else 0, repr(v)),
    )


def _cell(value: Any) -> str:
    if value is None:
        return '<td class="note">undef</td>'
    if isinstance(value, float):
        return f"<td>{value:.4g}</td>"
    return f"<td>{_e(value)}</td>"


def _more(shown: int, total: int, what: str) -> str:
    return f'<p class="note">showing {shown} of {total} {what}</p>' if total > shown else ""


def _map_table(op: Op, domain: list) -> str:
    f = op.fn.bind()
    rows = domain[:MAX_TABLE_ROWS]
    head = f"<tr><th>{_e(op.inputs[0])}</th>" + "".join(f"<th>{_e(x)}</th>" for x in rows) + "</tr>"
    body = (
        "<tr><th>"
        + _e(op.name)
        + "</th>"
        + "".join(_cell(apply_ignoring_errors(f, x)) for x in rows)
        + "</tr>"
    )
    return f"<table>{head}{body}</table>" + _more(len(rows), len(domain), "input values")


def _grid(op: Op, xs: list, ys: list) -> str:
    f = function_of(op)
    rows, cols = xs[:MAX_GRID], ys[:MAX_GRID]
    head = f"<tr><th>{_e(op.inputs[0])} \\ {_e(op.inputs[1])}</th>" + "".join(
        f"<th>{_e(y)}</th>" for y in cols
    )
    body = "".join(
        f"<tr><th>{_e(x)}</th>" + "".join(_cell(apply_ignoring_errors(f, x, y)) for y in cols) + "</tr>"
        for x in rows
    )
    return f"<table>{head}</tr>{body}</table>" + _more(len(rows) * len(cols), len(xs) * len(ys), "cells")


def _heatmap(op: Op, queries: list, keys: list) -> str:
    """The predicate over query (rows) x key (columns) values; filled = selected."""
    predicate = select_predicate(op)
    name = op.comparison or op.fn.source(PREDICATE_ARGUMENTS)
    rows, cols = queries[:MAX_GRID], keys[:MAX_GRID]
    head = f"<tr><th>query {_e(op.inputs[1])} \\ key {_e(op.inputs[0])}</th>" + "".join(
        f"<th>{_e(k)}</th>" for k in cols
    )
    body = "".join(
        f"<tr><th>{_e(q)}</th>"
        + "".join(
            f'<td class="{"on" if apply_ignoring_errors(predicate, k, q) else "off"}" '
            f'title="key {_e(k)}, query {_e(q)}"></td>'
            for k in cols
        )
        + "</tr>"
        for q in rows
    )
    return (
        f"<p>predicate <code>{_e(name)}</code>: a filled cell is a selected (query, key) pair</p>"
        f'<table class="heat">{head}</tr>{body}</table>'
        + _more(len(rows) * len(cols), len(queries) * len(keys), "cells")
    )


def _details(report: Mapping[str, Any]) -> str:
    timings = report.get("timings_s", {})
    rows = "".join(f"<tr><td>{_e(k)}</td><td>{v:.3f} s</td></tr>" for k, v in timings.items())
    edits = "".join(f"<li>{_e(e)}</li>" for e in report.get("edits", []))
    parts = ["<h2>Run</h2>"]
    if rows:
        parts.append(f"<table><tr><th>stage</th><th>time</th></tr>{rows}</table>")
    if edits:
        parts.append(f"<p>repair edits:</p><ul>{edits}</ul>")
    config = report.get("config")
    if config:
        parts.append(f'<p class="note">search config: {_e(config.get("from"))}</p>')
    return "".join(parts)
