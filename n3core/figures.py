"""Plotly figures and HTML that show N3's results; pure functions of numbers, no models.

* :func:`probability_figure` — top classes of one image, full adaptation vs fc-only.
* :func:`confusion_figure` — a row-normalised confusion matrix heat map.
* :func:`accuracy_figure` — per-class accuracy of both classifiers.
* :func:`norms_figure` — ‖μ·ΔΘ‖ and ‖Θ‖ per adapted tensor (the paper's figure 6).
* :func:`evidence_html` / :func:`evidence_sentences` — a description with its words coloured
  by token evidence, and the "is a … because" / "is not a … because" lists.

Every piece of user text that goes into HTML is escaped here: descriptions are shown, never
rendered.
"""
from __future__ import annotations

import html
from typing import Sequence

import torch

__all__ = ["probability_figure", "confusion_figure", "accuracy_figure", "norms_figure", "evidence_html",
           "evidence_sentences", "FULL_COLOUR", "FC_COLOUR"]

FULL_COLOUR = "#1f77b4"
FC_COLOUR = "#ff7f0e"


def probability_figure(names: Sequence[str], full: torch.Tensor, fc_only: torch.Tensor, top: int = 5,
                       title: str = ""):
    """Horizontal grouped bars: the ``top`` classes (by the larger of the two probabilities)
    of one image, full adaptation vs fc-only. ``full`` and ``fc_only`` are ``[K]``."""
    import plotly.graph_objects as go

    best = torch.maximum(full, fc_only)
    order = best.argsort(descending=True)[:min(top, len(names))].tolist()[::-1]
    labels = [names[i] for i in order]
    fig = go.Figure()
    fig.add_bar(y=labels, x=[float(full[i]) for i in order], orientation="h", name="full adaptation",
                marker_color=FULL_COLOUR, text=[f"{float(full[i]):.0%}" for i in order], textposition="auto")
    fig.add_bar(y=labels, x=[float(fc_only[i]) for i in order], orientation="h", name="fc-only",
                marker_color=FC_COLOUR, text=[f"{float(fc_only[i]):.0%}" for i in order], textposition="auto")
    fig.update_layout(barmode="group", title=title or None, height=90 + 45 * len(order),
                      margin=dict(l=10, r=10, t=40 if title else 10, b=10), xaxis=dict(range=[0, 1], tickformat=".0%"),
                      legend=dict(orientation="h", y=-0.15))
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
