"""Explain: where both classifiers look (saliency, one colour scale), where each sentence of
the description looked, and the words that argued for and against a label."""
from __future__ import annotations

import streamlit as st
from state import md, session

from n3core.explain import SALIENCY_METHODS
from n3core.figures import evidence_html, evidence_sentences, saliency_figure, sentence_attention_figure
from n3core.workbench import Workbench


def explain_view(wb: Workbench, syn) -> None:
    ss = session()
    if syn is None or not ss.images:
        st.info("Synthesize a classifier and add a photo to explain it.")
        return
    keys = list(ss.images)
    c1, c2, c3, c4 = st.columns([3, 3, 2, 2])
    k = c1.selectbox("Photo", keys, key="explain_image")
    image = ss.images[k]["image"]
    pred = wb.classify(syn, [image])["full"][0]
    options = list(syn.names)
    label = c2.selectbox("Explain the label", options, index=int(pred.argmax()), key=f"explain_label_{syn.key[:8]}")
    method = c3.selectbox("Saliency method", SALIENCY_METHODS, key="explain_method")
    smooth = c4.slider("Smoothing σ (pixels)", 0, 12, 6, key="explain_smooth")
    target = options.index(label)

    st.subheader(f"Where the classifiers look for {md(label)}")
    with st.spinner("Computing saliency…"):
        maps = wb.saliency(syn, image, target, method, smooth=smooth)
    st.plotly_chart(saliency_figure(maps), key="saliency", config={"displayModeBar": False})
    st.caption(f"One colour scale for all three: the gradient of the label's score w.r.t. the pixels, smoothed "
               f"(σ = {smooth} px), in units of the larger map's 99th percentile. Right: full − fc-only — red where "
               f"the full adaptation looks more, blue where fc-only does; its largest value here is "
               f"{maps['difference_peak']:.2f} of that unit.")

    if wb.sentence_match is not None:
        sentence_view(wb, syn, k, image, label)

    st.subheader("Which words argued for and against")
    with st.spinner("Computing token evidence…"):
        ev = wb.evidence(syn, image, label)
    st.markdown("\n".join(f"- {md(line)}" for line in evidence_sentences(ev)))
    scale = max((w.score for ws in ev.words.values() for w in ws), default=1.0)
    st.markdown(f"**{md(ev.label)}** (argues for the label, green)")
    st.html(f"<div style='line-height:1.8'>{evidence_html(syn.descriptions[ev.label], ev.words[ev.label], positive=True, scale=scale)}</div>")
    for cls, _ in ev.negative_classes[:3]:
        st.markdown(f"**{md(cls)}** (argues against it, red) · p = {ev.probabilities[cls]:.1%}")
        st.html(f"<div style='line-height:1.8'>{evidence_html(syn.descriptions[cls], ev.words[cls], positive=False, scale=scale)}</div>")


def sentence_view(wb: Workbench, syn, k: str, image, label: str) -> None:
    st.subheader(f"Where each sentence of {md(label)}'s description looked")
    with st.spinner("Reading the sentence match…"):
        att = wb.sentence_attention(syn, image, label)
    st.plotly_chart(sentence_attention_figure(att), key="sentence_attention", config={"displayModeBar": False})
    several = (f" (the mean of {att['members']} trained alike; maps, matches and weights below are their means)"
               if att["members"] > 1 else "")
    st.caption(f"The full classifier adds κ = {wb.sentence_match:g} × a sentence match{several} to its logits: each sentence "
               f"of the description looks somewhere in the photo (red: where, each map scaled to its own peak) and is "
               f"scored by how well that region fits it. The sentences added {att['match_logit']:+.2f} to this "
               f"label's logit ({att['logit']:+.2f} in all). Shown: the six that added or took away most.")
    order = sorted(range(len(att["sentences"])), key=lambda i: -abs(float(att["contribution"][i])))
    st.markdown("\n".join(
        f"- **#{i + 1}** {md(att['sentences'][i])} — adds {float(att['contribution'][i]):+.2f} "
        f"(match {float(att['cosine'][i]):+.2f}, weight {float(att['weight'][i]):.0%})" for i in order))
