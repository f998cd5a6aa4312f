"""What N3 costs, measured on the machine it runs on.

    .venv/bin/python benchmarks/perf.py [--out benchmarks/results/perf.json] [--repeats 7]

Writes ``{"synthesis_ms": {"5": {"cold": x, "one_edit": y}, "25": ..., "50": ...},
"inference_ratio": r, "train_step_ratio_full_vs_plain": s, "train_peak_rss_gb": m, "machine": ...}``
plus the details:

* synthesis (full adaptation, the shipped checkpoint): ``cold`` = every description encoded
  (text cache cleared), ``one_edit`` = one description changed (the rest cached); medians;
* inference: images/s of the synthesized classifier vs the plain pretrained backbone with a
  linear head, same batch (64) and resolution (the shipped checkpoint's, 224 px since v2); ratio = synthesized / plain;
* one training step, batch 32 at the shipped checkpoint's resolution, K = 25: N3 full (meta-model → Θ' → backbone through
  ``functional_call``, backward into the meta-model), N3 fc-only (frozen backbone features),
  plain fine-tuning of every backbone weight with a linear head;
* peak resident memory of a real training run (``python -m n3core train`` with the shipped
  full stage's settings, 30 steps, in a child process);
* growth with K (5 … 100): one-edit synthesis time and the synthesis's peak memory increase
  (each K in a fresh child process, warmed up and malloc-tuned like this one; median of 5).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from n3core.data import description_file, display_name, load_descriptions, resolve_data_root
from n3core.evaluate import write_report
from n3core.synthesize import Synthesizer

ROOT = Path(__file__).resolve().parent.parent
CKPT = ROOT / "checkpoints" / "n3-effl0-minilm-ss0"
KS = (5, 25, 50)
GROWTH_KS = (5, 10, 25, 50, 100)


def all_descriptions() -> dict[str, str]:
    d = load_descriptions(description_file(resolve_data_root(None)))
    return {display_name(k): v for k, v in d.items()}


def median_ms(fn, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1000)
    return round(statistics.median(times), 1)


def synthesis_latency(synth: Synthesizer, pool: dict[str, str], repeats: int) -> dict:
    out = {}
    names = list(pool)
    for k in KS:
        desc = {n: pool[n] for n in names[:k]}
        synth.synthesize(desc)                                   # warm-up (allocator, kernels)

        def cold():
            synth.text_encoder.clear_cache()
            synth.synthesize(desc)

        counter = iter(range(10**6))
        first = names[0]

        def one_edit():
            synth.synthesize({**desc, first: desc[first] + f" Edit {next(counter)}."})

        out[str(k)] = {"cold": median_ms(cold, repeats), "one_edit": median_ms(one_edit, repeats)}
        print(f"synthesis K={k}: cold {out[str(k)]['cold']} ms, one edit {out[str(k)]['one_edit']} ms", flush=True)
    return out


@torch.no_grad()
def inference(synth: Synthesizer, pool: dict[str, str], repeats: int, batch: int = 64) -> dict:
    names = list(pool)[:25]
    clf = synth.synthesize({n: pool[n] for n in names})
    from n3core.backbones import create_backbone

    plain_bb = create_backbone(synth.config.backbone).module.eval()
    head = torch.nn.Linear(synth.backbone.feature_dim, len(names))
    plain = torch.nn.Sequential(plain_bb, head).eval()
    size = synth.config.image_size
    x = torch.randn(batch, 3, size, size)
    for m in (clf, plain):
        m(x)
    res = {}
    for _ in range(2):          # interleave, to share any drift in machine load
        for name, m in (("synthesized", clf), ("plain", plain)):
            ms = median_ms(lambda: m(x), repeats)
            res.setdefault(name, []).append(batch / (ms / 1000))
    ips = {k: round(max(v), 1) for k, v in res.items()}
    return {"images_per_s": ips, "batch": batch, "image_size": size,
            "inference_ratio": round(ips["synthesized"] / ips["plain"], 3)}


def train_steps(synth: Synthesizer, pool: dict[str, str], repeats: int, batch: int = 32, k: int = 25) -> dict:
    from n3core.backbones import create_backbone
    from n3core.train import backward_in_parts

    model = synth.model
    size = model.cfg.image_size
    desc = {n: pool[n] for n in list(pool)[:k]}
    enc = synth.text_encoder.encode(list(desc.values()))
    x = torch.randn(batch, 3, size, size)
    y = torch.randint(0, k, (batch,))
    model.train()
    opt = torch.optim.AdamW(model.meta.parameters(), lr=1e-4)

    def n3_full():
        a = model.meta(enc.states, enc.mask)
        loss = F.cross_entropy(a.classify(model.features(x, a)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    def n3_full_in_parts():    # the shipped full recipe's step (micro_batches = 2: half the activations)
        a = model.meta(enc.states, enc.mask)
        opt.zero_grad()
        backward_in_parts(model, a, x, y, 2)
        opt.step()

    with torch.no_grad():
        feats = model.backbone_module(x)

    def n3_fc_only():
        a = model.meta(enc.states, enc.mask)
        loss = F.cross_entropy(a.classify(feats), y)
        opt.zero_grad()
        loss.backward()
        opt.step()

    bb = create_backbone(model.cfg.backbone).module
    bb.train().requires_grad_(True)          # create_backbone freezes every weight (N3 never trains Θ)
    head = torch.nn.Linear(model.cfg.feature_dim, k)
    opt2 = torch.optim.AdamW(list(bb.parameters()) + list(head.parameters()), lr=1e-4)

    def plain():
        loss = F.cross_entropy(head(bb(x)), y)
        opt2.zero_grad()
        loss.backward()
        opt2.step()

    plain()
    frozen = [n for n, p in bb.named_parameters() if p.grad is None]
    if frozen:      # the baseline must be what its name says: until 2026-11-28 it trained the head alone
        raise RuntimeError(f"plain fine-tuning left {len(frozen)} backbone tensors without a gradient: {frozen[:3]}")

    out = {}
    for name, fn in (("n3_full", n3_full), ("n3_full_2_parts", n3_full_in_parts), ("n3_fc_only", n3_fc_only),
                     ("plain_finetune", plain)):
        fn()
        fn()
        out[name] = median_ms(fn, repeats)
        print(f"train step {name}: {out[name]} ms", flush=True)
    model.eval()
    return {"step_ms": out, "batch": batch, "k": k, "image_size": size,
            "train_step_ratio_full_vs_plain": round(out["n3_full"] / out["plain_finetune"], 3),
            "train_step_ratio_full_2_parts_vs_plain": round(out["n3_full_2_parts"] / out["plain_finetune"], 3),
            "plain_trains_backbone": True,
            "note": "n3_full trains the meta-model (backbone frozen, gradients flow through it into ΔΘ); "
                    "plain_finetune updates every backbone weight"}


def training_peak_rss(steps: int = 30) -> dict:
    """Peak resident memory of the shipped full stage's own settings (``checkpoints/recipe.json``'s ``full``,
    started from the shipped fc-only model) cut to ``steps`` steps, with a validation and a
    checkpoint (optimizer state included) at the last one."""
    with tempfile.TemporaryDirectory() as d:
        cfg = Path(d) / "cfg.json"
        recipe = json.loads((ROOT / "checkpoints" / "recipe.json").read_text())["full"]
        recipe["train"].update(max_steps=steps, eval_every=steps, checkpoint_every=steps, patience=None)
        cfg.write_text(json.dumps(recipe))
        t0 = time.time()
        cmd = [sys.executable, "-m", "n3core", "train", "--split", "ss0", "--out", str(Path(d) / "run"),
               "--config", str(cfg), "--init-from", str(ROOT / "checkpoints" / "n3-effl0-minilm-ss0-fconly"),
               "--no-progress"]
        proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"the training run failed: {' '.join(cmd)}")
        peak_kb = usage.ru_maxrss
    return {"train_peak_rss_gb": round(peak_kb / 2**20, 2), "steps": steps, "wall_s": round(time.time() - t0, 1),
            "command": "python -m n3core train --split ss0 --config <checkpoints/recipe.json's full stage> (30 steps) "
                       "--init-from checkpoints/n3-effl0-minilm-ss0-fconly"}


GROWTH_CHILD = r"""
import json, resource, sys, time
from n3core import runtime
runtime.setup()                      # as the app, the CLI and the parent process (malloc tuning)
from n3core.synthesize import Synthesizer
from n3core.data import description_file, display_name, load_descriptions, resolve_data_root
k = int(sys.argv[1])
pool = {display_name(a): b for a, b in load_descriptions(description_file(resolve_data_root(None))).items()}
names = list(pool)[:k]
s = Synthesizer.from_checkpoint(sys.argv[2], device="cpu")
s.synthesize({n: pool[n] for n in list(pool)[:2]})
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
s.synthesize({n: pool[n] for n in names})        # warm-up, as the parent's: every text and sentence seen once
times = []
for i in range(5):
    t = time.perf_counter()
    s.synthesize({**{n: pool[n] for n in names}, names[0]: pool[names[0]] + f" edit {i}"})
    times.append((time.perf_counter() - t) * 1000)
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"one_edit_ms": sorted(times)[2], "peak_rss_increase_mb": (after - before) / 1024}))
"""


def growth() -> dict:
    out = {}
    for k in GROWTH_KS:
        r = subprocess.run([sys.executable, "-c", GROWTH_CHILD, str(k), str(CKPT)], cwd=ROOT, check=True,
                           capture_output=True, text=True)
        out[str(k)] = json.loads(r.stdout.strip().splitlines()[-1])
        print(f"growth K={k}: {out[str(k)]}", flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "perf.json"))
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    pool = all_descriptions()
    synth = Synthesizer.from_checkpoint(CKPT, device="cpu")
    report = {"machine": f"{platform.machine()} CPU, {torch.get_num_threads()} torch threads, "
                         f"{platform.python_implementation()} {platform.python_version()}, torch {torch.__version__}",
              "checkpoint": CKPT.name,
              "targets": {"inference_ratio": ">= 0.95", "one_edit_ms_K25": "<= 100", "one_edit_ms_K50": "<= 150",
                          "train_step_ratio_full_vs_plain": "<= 1.5", "train_peak_rss_gb": "<= 8"}}
    report["synthesis_ms"] = synthesis_latency(synth, pool, args.repeats)
    inf = inference(synth, pool, args.repeats)
    report["inference_ratio"], report["inference"] = inf["inference_ratio"], inf
    tr = train_steps(synth, pool, args.repeats)
    report["train_step_ratio_full_vs_plain"], report["train_step"] = tr["train_step_ratio_full_vs_plain"], tr
    rss = training_peak_rss()
    report["train_peak_rss_gb"], report["train_run"] = rss["train_peak_rss_gb"], rss
    report["growth_with_k"] = growth()
    write_report(report, args.out)
    print(json.dumps({k: report[k] for k in ("synthesis_ms", "inference_ratio", "train_step_ratio_full_vs_plain",
                                             "train_peak_rss_gb")}, indent=1))


if __name__ == "__main__":
    from n3core import runtime

    runtime.setup()
    main()
