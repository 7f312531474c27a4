"""The recovered program's dataflow graph, laid out by layer, as SVG.

In: a `Program` and, per op, where it came from (symbolic / search / neural)
with a confidence. Out: an SVG string with one `<g class="op">` per op
(plus one `<g class="input">` per source SOp read), each holding a
`<title>` tooltip and linking to the op's section of the report page.

Ops are placed in the sublayer tracr compiles them into (`op_sublayers`,
from tracr's own layer allocation; a Select sits with the attention that
uses it). networkx lays the
columns out (`multipartite_layout`); matplotlib draws them to SVG. Colour
says where an op came from, its opacity how confident that source was.
"""

from __future__ import annotations

import html
import io
import re
from collections.abc import Hashable, Iterable, Mapping

from raspsynth.program.ir import SOURCES, Program
from raspsynth.tracr_bridge.compiler_graph import compiled_sublayers
from raspsynth.tracr_bridge.rasp_conversion import to_rasp

ORIGIN_COLOURS = {
    "symbolic": "#4C78A8",
    "search": "#F58518",
    "neural": "#B279A2",
    "input": "#9D9D9D",
}


def op_sublayers(program: Program, vocab: Iterable[Hashable], max_seq_len: int) -> dict[str, int]:
    """Op name -> the sublayer tracr compiles it into (2L: layer L's
    attention, 2L+1: its MLP; sources -1), from tracr's own allocation. A
    Select, which writes nothing, takes the attention sublayer of its first
    reader."""
    placed = compiled_sublayers(to_rasp(program), vocab, max_seq_len)
    out = {name: -1 for name in SOURCES}
    for op in program.ops:
        if op.kind != "select":
            out[op.name] = placed[op.name]
    for op in program.ops:
        if op.kind == "select":
            reader = next((o for o in program.ops if op.name in o.inputs), None)
            if reader is None:  # an unread select: beside the first attention after its inputs
                out[op.name] = max(out[i] for i in op.inputs) // 2 * 2 + 2
            else:
                out[op.name] = out[reader.name] // 2 * 2
    return out


def sublayer_name(sub: int) -> str:
    return "inputs" if sub < 0 else f"L{sub // 2} {'attn' if sub % 2 == 0 else 'mlp'}"


def node_id(name: str) -> str:
    """An id safe in SVG and HTML for an op name."""
    return "op-" + re.sub(r"[^A-Za-z0-9_-]", "_", name)


def circuit_svg(
    program: Program,
    sublayers: Mapping[str, int],
    origins: Mapping[str, tuple[str, float]],
    labels: Mapping[str, str] | None = None,
    tooltips: Mapping[str, str] | None = None,
) -> str:
    """The dataflow graph as SVG text (no XML prolog, ready to inline).

    `sublayers` places each op (`op_sublayers`); `origins` maps op names
    to (origin, confidence); `labels` to a short second line under the
    name; `tooltips` to hover text.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import networkx as nx
    from matplotlib.backends.backend_svg import FigureCanvasSVG
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    labels, tooltips = labels or {}, tooltips or {}
    used = sorted(
        {sublayers[i] for op in program.ops for i in op.inputs} | {sublayers[o.name] for o in program.ops}
    )
    column = {sub: n for n, sub in enumerate(used)}
    graph = nx.DiGraph()
    sources = [s for s in SOURCES if any(s in op.inputs for op in program.ops)]
    for name in sources:
        graph.add_node(name, layer=column[-1])
    for op in program.ops:
        graph.add_node(op.name, layer=column[sublayers[op.name]])
        for source in op.inputs:
            graph.add_edge(source, op.name)
    pos = nx.multipartite_layout(graph, subset_key="layer", align="vertical", scale=1.0)
    per_column: dict[int, int] = {}
    for name in graph:
        per_column[graph.nodes[name]["layer"]] = per_column.get(graph.nodes[name]["layer"], 0) + 1
    width = max(4.0, 2.3 * len(used))
    height = max(2.6, 1.05 * max(per_column.values()) + 1.2)

    fig = Figure(figsize=(width, height))
    FigureCanvasSVG(fig)
    ax = fig.add_axes((0.01, 0.1, 0.98, 0.82))
    ax.set_axis_off()
    nx.draw_networkx_edges(
        graph,
        pos,
        ax=ax,
        arrows=True,
        arrowstyle="-|>",
        arrowsize=12,
        edge_color="#555555",
        width=1.0,
        node_size=2600,
        connectionstyle="arc3,rad=0.08",
    )
    for name in graph:
        if name in SOURCES:
            colour, alpha, text = ORIGIN_COLOURS["input"], 0.8, name
        else:
            origin, confidence = origins.get(name, ("search", 0.0))
            colour = ORIGIN_COLOURS.get(origin, ORIGIN_COLOURS["search"])
            alpha = 0.3 + 0.7 * max(0.0, min(1.0, float(confidence)))
            op = program.op(name)
            text = f"{name}\n{labels.get(name, op.kind)}"
            if name == program.output:
                text += "\n(output)"
        x, y = pos[name]
        artist = ax.text(
            x,
            y,
            text,
            ha="center",
            va="center",
            fontsize=8,
            bbox={"boxstyle": "round,pad=0.45", "facecolor": colour, "alpha": alpha, "edgecolor": "#222222"},
            zorder=3,
        )
        artist.set_gid(node_id(name))
        artist.set_url(f"#sec-{node_id(name)}")
    xs = {graph.nodes[n]["layer"]: pos[n][0] for n in graph}
    for sub, n in column.items():
        ax.text(
            xs[n],
            1.0,
            sublayer_name(sub),
            transform=ax.get_xaxis_transform(),
            ha="center",
            va="bottom",
            fontsize=9,
            color="#333333",
        )
    handles = [Patch(facecolor=c, edgecolor="#222222", label=o) for o, c in ORIGIN_COLOURS.items()]
    fig.legend(
        handles=handles,
        loc="lower center",
        ncol=len(handles),
        fontsize=8,
        frameon=False,
        title="origin (opacity = confidence)",
        title_fontsize=8,
    )
    ax.margins(x=0.12, y=0.12)
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": "raspsynth"}):
        fig.savefig(
            buffer, format="svg", metadata={"Date": None, "Creator": None, "Format": None, "Type": None}
        )
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg") :]
    return _annotate(svg, program, tooltips)


def _annotate(svg: str, program: Program, tooltips: Mapping[str, str]) -> str:
    """Give each node group its class and a tooltip."""
    names = {node_id(name): name for name in (*SOURCES, *(op.name for op in program.ops))}

    def group(match: re.Match) -> str:
        ident = match.group(1)
        name = names.get(ident)
        if name is None:
            return match.group(0)
        kind = "input" if name in SOURCES else "op"
        title = html.escape(tooltips.get(name, name))
        return f'<g id="{ident}" class="{kind}" data-name="{html.escape(name)}"><title>{title}</title>'

    return re.sub(r'<g id="(op-[A-Za-z0-9_-]+)">', group, svg)
