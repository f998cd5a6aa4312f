"""Plotly figures and HTML that show N3's results to a person: pure functions of numbers, no
models. Every piece of user text that goes into HTML is escaped here: descriptions are shown,
never rendered."""
from __future__ import annotations

import html
from typing import Sequence

import torch

__all__ = ["probability_bars_html", "shift_figure", "control_figure", "saliency_figure",
           "sentence_attention_figure", "ab_accuracy_figure", "confusion_figure", "accuracy_figure", "norms_figure", "evidence_html",
           "evidence_sentences", "FULL_COLOUR", "FC_COLOUR", "MODE_COLOURS"]

FULL_COLOUR = "#1f77b4"
FC_COLOUR = "#ff7f0e"
DELTA_COLOUR = "#9467bd"
MODE_COLOURS = {"full": FULL_COLOUR, "ΔΘ only": DELTA_COLOUR, "fc-only": FC_COLOUR}
# one diverging scale, transparent at 0, for saliency over a photo: a map in [0, 1] uses its
# red half, a difference in [-1, 1] both halves
_OVERLAY_SCALE = [[0.0, "rgba(33,102,172,0.9)"], [0.25, "rgba(103,169,207,0.6)"], [0.5, "rgba(247,247,247,0)"],
                  [0.75, "rgba(239,138,98,0.6)"], [1.0, "rgba(178,24,43,0.9)"]]


def probability_bars_html(names: Sequence[str], after: dict, before: dict | None = None, top: int = 3,
                          true: int | None = None) -> str:
    """One photo's top ``top`` classes as HTML bars, one per mode (``after[mode]`` is ``[K]``),
    with a black tick where the bar stood before the last edit (``before[mode]``, aligned to
    ``names``; NaN for a class that did not exist) and the change in points. ``true``: index of
    the photo's known class, marked ✓."""
    best = torch.stack([after[m] for m in after]).amax(0)
    order = best.argsort(descending=True)[:min(top, len(names))].tolist()
    rows = []
    for i in order:
        label = html.escape(names[i]) + (" ✓" if true == i else "")
        bars = []
        for mode, p in after.items():
            v = float(p[i])
            tick, delta = "", ""
            if before is not None:
                b = float(before[mode][i])
                if b == b:
                    tick = (f'<div style="position:absolute;left:{100 * b:.1f}%;top:-2px;width:2px;height:14px;'
                            f'background:#000" title="before: {b:.0%}"></div>')
                    d = 100 * (v - b)
                    if abs(d) >= 0.5:
                        delta = f' <span style="color:{"#2ca02c" if d > 0 else "#d62728"}">{"▲" if d > 0 else "▼"}{abs(d):.0f}</span>'
                else:
                    delta = ' <span style="color:#2ca02c">new</span>'
            bars.append(f'<div style="display:flex;align-items:center;gap:6px;font-size:12px">'
                        f'<div style="position:relative;flex:1;height:10px;background:#eee;border-radius:2px">'
                        f'<div style="width:{100 * v:.1f}%;height:10px;background:{MODE_COLOURS.get(mode, "#888")};'
                        f'border-radius:2px"></div>{tick}</div>'
                        f'<div style="width:92px">{html.escape(mode)} {v:.0%}{delta}</div></div>')
        rows.append(f'<div style="margin-bottom:4px"><div style="font-size:13px">{label}</div>{"".join(bars)}</div>')
    return "".join(rows)


def shift_figure(photos: Sequence[str], names: Sequence[str], shift: dict, title: str = "What the last edit changed"):
    """(``title`` is the caller's to escape; photo and class names are escaped here.) Heat maps of ``shift[mode]`` ``[B, C]`` (probability after − before; rows photos,
    columns classes), one per mode on one symmetric colour scale, Δ in points written in
    each cell that moved by at least one point."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    modes = list(shift)
    top = max(1e-6, max(float(shift[m].abs().max()) for m in modes)) if len(photos) else 1.0
    fig = make_subplots(rows=1, cols=len(modes), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"{m}: p after − p before" for m in modes])
    for c, m in enumerate(modes, 1):
        z = (100 * shift[m]).tolist()
        text = [[f"{v:+.0f}" if abs(v) >= 1 else "" for v in row] for row in z]
        fig.add_trace(go.Heatmap(z=z, x=[html.escape(n) for n in names], y=[html.escape(n) for n in photos],
                                 zmin=-100 * top, zmax=100 * top, zmid=0,
                                 colorscale="RdBu", text=text, texttemplate="%{text}", showscale=c == len(modes),
                                 colorbar=dict(title="Δp (points)"),
                                 hovertemplate="%{y}<br>%{x}: %{z:+.1f} points<extra>" + html.escape(m) + "</extra>"),
                      1, c)
    fig.update_yaxes(autorange="reversed")
    fig.update_xaxes(tickangle=30)
    fig.update_layout(title=title, height=140 + 26 * len(photos), margin=dict(l=10, r=10, t=60, b=10))
    return fig


CONTROL_MARKERS = {"both": ("ΔΘ and match from other texts", "x", "#d62728"),
                   "delta": ("ΔΘ alone from other texts", "triangle-up", DELTA_COLOUR),
                   "match": ("match alone from other texts", "square-open", "#2ca02c")}


def control_figure(photos: Sequence[str], control, labels: Sequence[int | None] | None = None):
    """Per photo, the full classifier's probability of the class it predicts with its own
    words: with them, with each arm of the control written from other classes' descriptions
    (one marker per draw) and with no adaptation at all. ``control`` is a
    :class:`n3core.workbench.LanguageControl`."""
    import plotly.graph_objects as go

    pred = control.own.argmax(-1)
    idx = torch.arange(len(pred))
    x = [html.escape(f"{p} → {control.names[int(c)]}") for p, c in zip(photos, pred)]
    fig = go.Figure()
    for arm, swapped in control.arms().items():
        name, symbol, colour = CONTROL_MARKERS[arm]
        for r in range(len(swapped)):
            fig.add_scatter(x=x, y=swapped[r][idx, pred].tolist(), mode="markers", name=name,
                            legendgroup=arm, showlegend=r == 0, marker=dict(symbol=symbol, size=9, color=colour))
    fig.add_scatter(x=x, y=control.no_adaptation[idx, pred].tolist(), mode="markers", name="none (Θ, no match)",
                    marker=dict(symbol="circle-open", size=11, color="#7f7f7f"))
    fig.add_scatter(x=x, y=control.own[idx, pred].tolist(), mode="markers", name="from these descriptions",
                    marker=dict(symbol="diamond", size=11, color=FULL_COLOUR))
    fig.update_layout(title="What carries the words? Full classifier, same classification layer",
                      yaxis=dict(range=[0, 1.02], tickformat=".0%", title="p(predicted class)"),
                      xaxis=dict(tickangle=30), height=440, margin=dict(l=10, r=10, t=50, b=10),
                      legend=dict(orientation="h", y=1.1))
    return fig


def saliency_figure(maps: dict, titles: Sequence[str] = ("full adaptation", "fc-only", "full − fc-only")):
    """The photo three times with ``maps["full"]``, ``maps["fc-only"]`` and
    ``maps["difference"]`` (from :func:`n3core.explain.saliency_maps`) laid over it on one
    diverging colour scale: red where a classifier looks (the difference: red where full
    looks more, blue where fc-only does), transparent at 0."""
    bar = dict(title="saliency", tickvals=[-1, 0, 1], ticktext=["fc-only more", "0", "high / full more"])
    return _overlays(maps["image"], [maps[k] for k in ("full", "fc-only", "difference")], titles, cols=3,
                     colorbar=bar, height=330)


def sentence_attention_figure(att: dict, top: int = 6, cols: int = 3):
    """The photo once per sentence, with that sentence's attention laid over it
    (:func:`n3core.explain.sentence_attention`): the ``top`` sentences by the size of what
    they added to the logit, each titled with its number, that contribution and its match
    (cosine)."""
    order = sorted(range(len(att["sentences"])), key=lambda i: -abs(float(att["contribution"][i])))[:top]
    titles = [f"#{i + 1}: {float(att['contribution'][i]):+.2f} (match {float(att['cosine'][i]):+.2f})" for i in order]
    return _overlays(att["image"], [att["attention"][i] for i in order], titles, cols=cols)


def _overlays(image: torch.Tensor, maps: list[torch.Tensor], titles: Sequence[str], cols: int,
              colorbar: dict | None = None, height: int = 300):
    """The photo (RGB ``[3, S, S]`` in [0, 1]) once per map ``[S, S]`` in [-1, 1], the map laid
    over it on the overlay scale at about 1/4 resolution; ``colorbar`` shown beside the last."""
    import base64
    import io

    import plotly.graph_objects as go
    from PIL import Image
    from plotly.subplots import make_subplots

    buf = io.BytesIO()
    Image.fromarray((image.clamp(0, 1) * 255).byte().permute(1, 2, 0).numpy()).save(buf, format="JPEG", quality=85)
    src = "data:image/jpeg;base64," + base64.b64encode(buf.getvalue()).decode()
    step = max(1, image.shape[-1] // 56)
    rows = max(1, -(-len(maps) // cols))
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=list(titles), horizontal_spacing=0.02,
                        vertical_spacing=0.08)
    for j, z in enumerate(maps):
        r, c = j // cols + 1, j % cols + 1
        fig.add_trace(go.Image(source=src, hoverinfo="skip"), r, c)
        fig.add_trace(go.Heatmap(z=z[::step, ::step].tolist(), x0=step / 2, dx=step, y0=step / 2, dy=step, zmin=-1,
                                 zmax=1, zsmooth="best", colorscale=_OVERLAY_SCALE, hoverinfo="skip",
                                 showscale=colorbar is not None and j == len(maps) - 1, colorbar=colorbar), r, c)
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x")
    fig.update_layout(height=height * rows, margin=dict(l=0, r=0, t=30, b=0))
    return fig


def ab_accuracy_figure(per_class_a: dict, per_class_b: dict):
    """Per-class accuracy under description A and B, both modes: ``per_class_x[mode][class]``."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for mode in per_class_a:
        for tag, acc, pattern in (("A", per_class_a[mode], ""), ("B", per_class_b[mode], "/")):
            fig.add_bar(x=[html.escape(n) for n in acc], y=[a if a is not None else 0 for a in acc.values()], name=f"{mode}, {tag}",
                        marker=dict(color=MODE_COLOURS.get(mode, "#888"), pattern_shape=pattern,
                                    opacity=0.55 if tag == "A" else 1.0))
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%", title="accuracy"), height=360,
                      margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h"))
    return fig


def confusion_figure(confusion: Sequence[Sequence[int]], names: Sequence[str], title: str = "Confusion"):
    """Row-normalised confusion matrix (rows: true class, columns: predicted); hover shows counts."""
    import plotly.graph_objects as go

    cm = torch.as_tensor(confusion, dtype=torch.float)
    rows = cm.sum(1, keepdim=True).clamp_min(1)
    frac = (cm / rows).tolist()
    fig = go.Figure(go.Heatmap(z=frac, x=list(names), y=list(names), colorscale="Blues", zmin=0, zmax=1,
                               customdata=cm.long().tolist(),
                               hovertemplate="true %{y}<br>predicted %{x}<br>%{z:.0%} (%{customdata} images)<extra></extra>"))
    fig.update_layout(title=title, height=max(320, 60 + 22 * len(names)), xaxis=dict(title="predicted", tickangle=45),
                      yaxis=dict(title="true", autorange="reversed"), margin=dict(l=10, r=10, t=40, b=10))
    return fig


def accuracy_figure(per_class: dict[str, dict[str, float | None]]):
    """Grouped bars of per-class accuracy, one group per class, one bar per mode."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for mode, colour in (("full", FULL_COLOUR), ("fc-only", FC_COLOUR)):
        acc = per_class[mode]
        fig.add_bar(x=list(acc), y=[a if a is not None else 0 for a in acc.values()], name=mode, marker_color=colour)
    fig.update_layout(barmode="group", yaxis=dict(range=[0, 1], tickformat=".0%", title="accuracy"),
                      height=360, margin=dict(l=10, r=10, t=30, b=10), legend=dict(orientation="h"))
    return fig


def norms_figure(rows: list[dict], title: str = "Adaptation per layer"):
    """‖μ·ΔΘ‖ and ‖Θ‖ per tensor (log scale), and their ratio; ``rows`` from
    :func:`n3core.explain.adaptation_norms`."""
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    names = [r["name"] for r in rows]
    fig = make_subplots(rows=2, cols=1, shared_xaxes=True, vertical_spacing=0.06,
                        subplot_titles=("norms (log scale)", "‖μ·ΔΘ‖ / ‖Θ‖"))
    fig.add_trace(go.Scatter(x=names, y=[r["theta_norm"] for r in rows], name="‖Θ‖ pretrained", mode="lines+markers"), 1, 1)
    fig.add_trace(go.Scatter(x=names, y=[r["delta_norm"] for r in rows], name="‖μ·ΔΘ‖ adaptation", mode="lines+markers"), 1, 1)
    if rows and "edit_norm" in rows[0]:
        fig.add_trace(go.Scatter(x=names, y=[max(r["edit_norm"], 1e-12) for r in rows], mode="lines+markers",
                                 name="‖μ·(ΔΘ − ΔΘ before)‖ the last edit", line=dict(color="#2ca02c")), 1, 1)
        fig.add_trace(go.Bar(x=names, y=[r["edit_norm"] / r["delta_norm"] if r["delta_norm"] else 0 for r in rows],
                             name="edit / ‖μ·ΔΘ‖", marker_color="#2ca02c"), 2, 1)
        fig.layout.annotations[1].text = "how much of each tensor's adaptation the edit moved"
    else:
        fig.add_trace(go.Bar(x=names, y=[r["ratio"] for r in rows], name="ratio", marker_color="#d62728"), 2, 1)
    fig.update_yaxes(type="log", row=1, col=1)
    fig.update_layout(title=title, height=600, legend=dict(orientation="h"), xaxis2=dict(showticklabels=False))
    return fig


def evidence_html(text: str, words, *, positive: bool, scale: float | None = None) -> str:
    """``text`` as escaped HTML with each scored word (objects with ``start``, ``end``,
    ``score``) highlighted: green when the description argues *for* the label (``positive``),
    red when it argues against. Intensity is ``score / scale`` (default: the largest score)."""
    words = sorted(words, key=lambda w: w.start)
    top = scale if scale else max((w.score for w in words), default=0.0) or 1.0
    rgb = "40,160,70" if positive else "214,39,40"
    out, pos = [], 0
    for w in words:
        if w.start < pos:
            continue
        out.append(html.escape(text[pos:w.start]))
        a = max(0.0, min(1.0, w.score / top))
        out.append(f'<span title="{w.score:.3g}" style="background: rgba({rgb},{a:.2f}); border-radius: 3px">'
                   f"{html.escape(text[w.start:w.end])}</span>")
        pos = w.end
    out.append(html.escape(text[pos:]))
    return "".join(out).replace("\n", "<br>")


def evidence_sentences(evidence, words_per_class: int = 5) -> list[str]:
    """The paper's reading of token evidence, as plain text lines:
    ``"is a Blue Jay because: crested, blue, …"`` and, per top negative class,
    ``"is not a Cedar Waxwing because: mask, tan, …"``."""
    lines = [f"is a {evidence.label} because: " + ", ".join(w.text for w in evidence.positive[:words_per_class])]
    by_class: dict[str, list[str]] = {}
    for w in evidence.negative:
        by_class.setdefault(w.cls, []).append(w.text)
    for cls, _ in evidence.negative_classes:
        if cls in by_class:
            lines.append(f"is not a {cls} because: " + ", ".join(by_class[cls][:words_per_class]))
    return lines
