"""Crash safety with a real SIGKILL: a training process killed between checkpoints, and one
killed in the middle of writing a checkpoint. In both cases ``--resume`` continues from the
last good checkpoint, a half-written one is never loaded, and the run ends exactly where an
uninterrupted run ends. (Tiny backbone, real photos and text encoder.)"""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from n3core.checkpoint import latest_checkpoint, load_checkpoint, recover_run_dir, save_checkpoint
from n3core.train import TrainConfig, train
from tests.conftest import make_tiny_backbone, tiny_config

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, os, signal, sys, time
sys.path.insert(0, sys.argv[1])
import torch
from tests.conftest import make_tiny_backbone, tiny_config
from n3core.train import TrainConfig, train
import n3core.checkpoint as ck

mode, out, split = sys.argv[2], sys.argv[3], sys.argv[4]
if mode == "slow":                   # slow steps, so the parent can kill between checkpoints
    step = torch.optim.AdamW.step
    def slow(self, *a, **k):
        time.sleep(0.4)
        return step(self, *a, **k)
    torch.optim.AdamW.step = slow
else:                                # die inside the write of checkpoint `mode`, half of it on disk
    import safetensors.torch as st
    orig = st.save_file
    def dying(tensors, path, metadata=None):
        if f".tmp-{mode}-" in str(path):
            with open(path, "wb") as f:
                f.write(b"half a file")
                f.flush()
                os.fsync(f.fileno())
            os.kill(os.getpid(), signal.SIGKILL)
        return orig(tensors, path, metadata=metadata)
    st.save_file = dying
t = TrainConfig(split=split, k=3, batch_size=6, max_steps=8, eval_every=2, checkpoint_every=2, warmup_steps=2,
                feature_views=2)
train(tiny_config(text_dim=384), t, out, progress=False, backbone=make_tiny_backbone())
"""


@pytest.fixture(scope="module")
def uninterrupted(small_split, tmp_path_factory, text_encoder):
    out = tmp_path_factory.mktemp("ref") / "run"
    t = TrainConfig(split=small_split, k=3, batch_size=6, max_steps=8, eval_every=2, checkpoint_every=2,
                    warmup_steps=2, feature_views=2)
    train(tiny_config(text_dim=384), t, out, progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)
    return load_checkpoint(out / "final")[0]


def _resume_and_compare(out: Path, small_split: str, text_encoder, reference: dict) -> dict:
    t = TrainConfig(split=small_split, k=3, batch_size=6, max_steps=8, eval_every=2, checkpoint_every=2,
                    warmup_steps=2, feature_views=2)
    res = train(tiny_config(text_dim=384), t, out, resume=True, progress=False, backbone=make_tiny_backbone(),
                text_encoder=text_encoder)
    assert res["steps"] == 8
    w = load_checkpoint(out / "final")[0]
    for k in reference:
        torch.testing.assert_close(w[k], reference[k], atol=1e-6, rtol=0)
    return res


def _child(mode: str, out: Path, split: str) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", CHILD, str(ROOT), mode, str(out), split], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_sigkill_between_checkpoints_then_resume(small_split, tmp_path, text_encoder, uninterrupted):
    out = tmp_path / "run"
    proc = _child("slow", out, small_split)
    deadline = time.time() + 240
    while latest_checkpoint(out) is None or latest_checkpoint(out).name != "step-00000004":
        assert proc.poll() is None, proc.stdout.read().decode()[-2000:]
        assert time.time() < deadline, "the child never reached step 4"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (out / "final").exists()
    assert int(latest_checkpoint(out).name.split("-")[1]) < 8
    _resume_and_compare(out, small_split, text_encoder, uninterrupted)


def test_sigkill_inside_a_checkpoint_write_then_resume(small_split, tmp_path, text_encoder, uninterrupted):
    out = tmp_path / "run"
    proc = _child("step-00000004", out, small_split)
    proc.wait(timeout=240)
    assert proc.returncode == -signal.SIGKILL, proc.stdout.read().decode()[-2000:]
    leftovers = [p.name for p in out.iterdir() if p.name.startswith(".tmp-")]
    assert leftovers, "the kill left a half-written checkpoint folder"
    assert latest_checkpoint(out).name == "step-00000002", "the half-written step-4 is never picked"
    res = _resume_and_compare(out, small_split, text_encoder, uninterrupted)
    assert not [p for p in out.iterdir() if p.name.startswith((".tmp-", ".old-"))]
    assert res["steps"] == 8


def test_kill_between_the_two_renames_restores_the_old_folder(tmp_path):
    save_checkpoint(tmp_path / "best", {"w": torch.ones(2)}, {"step": 2})
    os.rename(tmp_path / "best", tmp_path / ".old-best-123-456")        # what a kill at that instant leaves
    (tmp_path / ".tmp-best-xyz").mkdir()
    done = recover_run_dir(tmp_path)
    assert (tmp_path / "best").is_dir() and load_checkpoint(tmp_path / "best")[1]["step"] == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best"]
    assert any("restored best" in d for d in done)
