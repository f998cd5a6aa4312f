"""Training loop, checkpoints, resume and synthesis with a tiny backbone on real photos."""
from __future__ import annotations

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from n3core.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from n3core.evaluate import per_class_accuracy
from n3core.meta import N3Model, SynthesisError
from n3core.synthesize import Synthesizer
from n3core.train import TrainConfig, train
from tests.conftest import make_tiny_backbone, tiny_config


def _cfgs(small_split, **kw):
    t = dict(split=small_split, k=3, batch_size=6, max_steps=6, eval_every=3, checkpoint_every=3, warmup_steps=2,
             feature_views=2)
    t.update(kw)
    return tiny_config(text_dim=384), TrainConfig(**t)


class _Killed(BaseException):
    """Stands for the process dying: nothing after it runs."""


def test_train_writes_checkpoints_and_resume_matches(small_split, tmp_path, text_encoder, monkeypatch):
    m, t = _cfgs(small_split)
    full = train(m, t, tmp_path / "a", progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)
    assert full["steps"] == 6
    for name in ("best", "final", "step-00000006"):
        assert (tmp_path / "a" / name / "model.safetensors").exists()
    assert len((tmp_path / "a" / "log.jsonl").read_text().splitlines()) == 2
    info = json.loads((tmp_path / "a" / "final" / "checkpoint.json").read_text())
    assert info["step"] == 6 and info["split"]["train"] and info["config"]["mode"] == "full"

    # killed after step 4 (last checkpoint at 3), then resumed: ends where the uninterrupted run did
    import n3core.train as train_module

    step_fn = train_module.train_step

    def dying(run, step):
        if step == 4:
            raise _Killed
        return step_fn(run, step)

    m, t = _cfgs(small_split)
    monkeypatch.setattr(train_module, "train_step", dying)
    with pytest.raises(_Killed):
        train(m, t, tmp_path / "b", progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)
    monkeypatch.undo()
    assert latest_checkpoint(tmp_path / "b").name == "step-00000003" and not (tmp_path / "b" / "final").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        train(m, t, tmp_path / "b", progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)
    res = train(m, t, tmp_path / "b", resume=True, progress=False, backbone=make_tiny_backbone(),
                text_encoder=text_encoder)
    assert res["steps"] == 6
    wa, _, _ = load_checkpoint(tmp_path / "a" / "final")
    wb, _, _ = load_checkpoint(tmp_path / "b" / "final")
    assert set(wa) == set(wb)
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k


def test_patience_stops_early_and_resume_keeps_the_stop(small_split, tmp_path, text_encoder, monkeypatch):
    """Scripted val accuracies 0.5, 0.6, 0.4, 0.3, ...: with patience 2 the run stops after the 4th
    validation, best/ is step 2 (what the full run would pick) and --resume trains nothing more."""
    import n3core.train as train_module

    vals = iter([0.5, 0.6, 0.4, 0.3, 0.7, 0.8, 0.9, 0.9])
    monkeypatch.setattr(train_module, "adaptation_accuracy", lambda *a, **k: {"top1": next(vals)})
    steps = []
    step_fn = train_module.train_step
    monkeypatch.setattr(train_module, "train_step", lambda run, step: steps.append(step) or step_fn(run, step))
    m, t = _cfgs(small_split, max_steps=8, eval_every=1, checkpoint_every=100, patience=2)
    res = train(m, t, tmp_path / "p", progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)
    assert res["steps"] == 4 and res["stopped_early"] and res["best_val_top1"] == 0.6
    assert steps == [0, 1, 2, 3]
    assert json.loads((tmp_path / "p" / "best" / "checkpoint.json").read_text())["step"] == 2
    assert json.loads((tmp_path / "p" / "final" / "checkpoint.json").read_text())["step"] == 4
    res = train(m, t, tmp_path / "p", resume=True, progress=False, backbone=make_tiny_backbone(),
                text_encoder=text_encoder)
    assert res["steps"] == 4 and res["stopped_early"] and steps == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="patience"):
        TrainConfig(patience=0)


def test_fc_only_training_runs(small_split, tmp_path, text_encoder):
    m, t = _cfgs(small_split)
    m.mode = "fc-only"
    r = train(m, t, tmp_path / "fc", progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)
    assert r["steps"] == 6 and 0.0 <= r["best_val_top1"] <= 1.0


def test_checkpoint_round_trip_gives_identical_logits(tmp_path, text_encoder):
    bb = make_tiny_backbone()
    model = N3Model(tiny_config(text_dim=384), bb).eval()
    info = {"config": model.cfg.to_dict(), "backbone": bb.signature(), "step": 0}
    save_checkpoint(tmp_path / "ck", model.meta.state_dict(), info)
    synth = Synthesizer.from_checkpoint(tmp_path / "ck", backbone=bb, text_encoder=text_encoder, device="cpu")
    desc = {"red bird": "A small bright red bird with a black face.", "blue bird": "A blue bird with white wings.",
            "brown bird": "A plain brown bird with streaks."}
    enc = text_encoder.encode(list(desc.values()))
    x = torch.randn(4, 3, 16, 16)
    with torch.no_grad():
        ref = model(x, enc.states, enc.mask)
        clf = synth.synthesize(desc)
        assert torch.allclose(clf(x), ref, atol=1e-5)
    assert clf.class_names == list(desc) and clf.predict(x).sum(1).allclose(torch.ones(4))
    # fp16 storage loads back close to the original
    save_checkpoint(tmp_path / "ck16", model.meta.state_dict(), info, half=True)
    clf16 = Synthesizer.from_checkpoint(tmp_path / "ck16", backbone=bb, text_encoder=text_encoder,
                                        device="cpu").synthesize(desc)
    with torch.no_grad():
        assert torch.allclose(clf16(x), ref, atol=2e-2)


def test_bad_synthesis_inputs(tmp_path, text_encoder):
    bb = make_tiny_backbone()
    model = N3Model(tiny_config(text_dim=384), bb)
    synth = Synthesizer(model, text_encoder)
    with pytest.raises(SynthesisError, match="at least 2 classes"):
        synth.synthesize({"only": "one class"})
    with pytest.raises(SynthesisError, match="duplicate class name"):
        synth.synthesize({"Blue Jay": "blue", " blue jay": "also blue"})
    with pytest.raises(SynthesisError, match="description of 'b' is empty"):
        synth.synthesize({"a": "red", "b": "  "})
    with pytest.raises(SynthesisError, match="empty name"):
        synth.synthesize({"a": "red", "": "blue"})


def test_bad_checkpoints(tmp_path, text_encoder):
    bb = make_tiny_backbone()
    model = N3Model(tiny_config(text_dim=384), bb)
    info = {"config": model.cfg.to_dict(), "backbone": bb.signature()}
    ck = save_checkpoint(tmp_path / "ck", model.meta.state_dict(), info)
    # another backbone
    from n3core.backbones import create_backbone

    with pytest.raises(CheckpointError, match="trained on backbone 'tiny'"):
        Synthesizer.from_checkpoint(ck, backbone=create_backbone("resnet18"), text_encoder=text_encoder)
    # damaged weights
    raw = (ck / "model.safetensors").read_bytes()
    (ck / "model.safetensors").write_bytes(raw[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="SHA-256 does not match"):
        load_checkpoint(ck)
    # a pickle renamed to .safetensors, with a matching checksum: still refused, nothing executed
    import hashlib

    torch.save({"x": torch.zeros(2)}, ck / "model.safetensors")
    meta = json.loads((ck / "checkpoint.json").read_text())
    meta["files"]["model.safetensors"] = hashlib.sha256((ck / "model.safetensors").read_bytes()).hexdigest()
    (ck / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(ck)
    (ck / "checkpoint.json").write_text("{ broken")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(ck)
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "nothing")


def test_half_written_checkpoint_is_never_picked(tmp_path):
    save_checkpoint(tmp_path / "step-00000002", {"w": torch.ones(2)}, {"step": 2})
    save_checkpoint(tmp_path / "step-00000004", {"w": torch.ones(2)}, {"step": 4})
    (tmp_path / "step-00000004" / "model.safetensors").write_bytes(b"torn")
    (tmp_path / ".tmp-step-00000006-abc").mkdir()
    assert latest_checkpoint(tmp_path).name == "step-00000002"


def test_per_class_accuracy_by_hand():
    logits = torch.tensor([[3., 1, 0], [0, 2, 1], [1, 0, 3], [2, 1, 0], [0, 1, 2]])
    labels = torch.tensor([0, 1, 1, 2, 2])
    r = per_class_accuracy(logits, labels, 3)
    # class 0: 1/1, class 1: 1/2, class 2: 1/2 → mean 2/3 (a plain image mean would be 3/5)
    assert r["top1"] == pytest.approx(2 / 3)
    assert r["top5"] == pytest.approx(1.0)
    assert r["per_class_top1"] == pytest.approx([1.0, 0.5, 0.5])


def test_export_runs_with_torch_alone(tmp_path, text_encoder):
    bb = make_tiny_backbone()
    synth = Synthesizer(N3Model(tiny_config(text_dim=384), bb), text_encoder)
    clf = synth.synthesize({"a": "red bird", "b": "blue bird", "c": "green bird"})
    path = clf.export(tmp_path / "clf.pt2")
    x = torch.randn(3, 3, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    with torch.no_grad():
        ref = clf(x)
    code = (
        "import json, sys, warnings, torch\n"
        "warnings.simplefilter('error', FutureWarning)\n"
        "extra = {'n3.json': ''}\n"
        f"m = torch.export.load({str(path)!r}, extra_files=extra).module()\n"
        f"x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "meta = json.loads(extra['n3.json'])\n"
        "assert 'n3core' not in sys.modules\n"
        f"torch.save(m(x), {str(tmp_path / 'y.pt')!r})\n"
        "assert m(x[:1]).shape == (1, 3), 'any batch size'\n"
        "print(meta['class_names'], meta['image_size'])\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "['a', 'b', 'c'] 16" in r.stdout
    assert torch.allclose(torch.load(tmp_path / "y.pt"), ref, atol=1e-5)


def test_fc_only_view_0_is_the_whole_photo_and_the_others_are_crops():
    """fc-only trains on cached features: view 0 must be what evaluation computes (the whole
    photo), the other views augmented crops."""
    from n3core.features import frozen_features

    class _Cache:
        def __init__(self, images, spec):
            self.images, self.spec = images, spec
            self.records = [SimpleNamespace(path=f"photo{i}.jpg") for i in range(len(images))]

        def __len__(self):
            return len(self.images)

    bb = make_tiny_backbone()
    model = N3Model(tiny_config(mode="fc-only"), bb)
    g = torch.Generator().manual_seed(0)
    train_c, val_c = (_Cache(torch.randint(0, 256, (n, 3, 20, 20), dtype=torch.uint8, generator=g), model.preprocess)
                      for n in (5, 3))
    tf, _ = frozen_features(bb, train_c, views=3, progress=False)
    vf = frozen_features(bb, val_c, progress=False)[0][:, 0]
    assert tf.shape == (5, 3, 8) and vf.shape == (3, 8)
    spec = model.preprocess
    with torch.no_grad():
        whole = bb.module(spec.normalize(train_c.images))
        torch.testing.assert_close(tf[:, 0], whole)
        torch.testing.assert_close(vf, bb.module(spec.normalize(val_c.images)))
    assert not torch.allclose(tf[:, 1], whole, atol=1e-4) and not torch.allclose(tf[:, 1], tf[:, 2], atol=1e-4)


def test_text_bank_reads_the_main_description_with_main_text_prob(text_encoder):
    from n3core.textbank import TextBank

    variants = {"a": ["Main text of a.", "Other a one.", "Other a two."], "b": ["Only text of b."]}

    def draws(main_prob, n=600):
        bank = TextBank(text_encoder, variants, ["a", "b"], main_prob)
        g = torch.Generator().manual_seed(0)
        picks = [bank.pick(["a", "b"], g) for _ in range(n)]
        assert all(p[1] == bank.rows["b"][0] for p in picks)          # one variant: always it
        return bank, [p[0] - bank.rows["a"][0] for p in picks]         # variant number of class a

    assert set(draws(1.0)[1]) == {0}
    assert set(draws(0.0)[1]) == {1, 2}                                # never the main text, both others
    _, v = draws(0.7)
    assert abs(v.count(0) / len(v) - 0.7) < 0.07 and abs(v.count(1) - v.count(2)) < 0.1 * len(v)
    _, v = draws(None)                                                 # uniform over all three
    assert all(abs(v.count(i) / len(v) - 1 / 3) < 0.07 for i in range(3))
    bank, _ = draws(0.5)
    st, mask = bank.get(["a", "b"], "cpu")                             # no rng: the main texts
    enc = text_encoder.encode([variants["a"][0], variants["b"][0]])
    assert st.shape == enc.states.shape and torch.equal(mask, enc.mask)  # padded to the longer text only
    assert torch.equal(st, enc.states * enc.mask[..., None])


def test_main_text_prob_out_of_range_is_refused():
    with pytest.raises(ValueError, match="main_text_prob"):
        TrainConfig.from_dict({"main_text_prob": 1.5})


def test_form_rows_become_a_class_set_with_one_duplicate_rule():
    from n3core.synthesize import check_descriptions, descriptions_from_pairs

    assert descriptions_from_pairs([(" Blue Jay ", "a"), ("Cardinal", "b")]) == {"Blue Jay": "a", "Cardinal": "b"}
    with pytest.raises(SynthesisError, match="duplicate class name"):
        descriptions_from_pairs([("Blue Jay", "a"), ("ＢＬＵＥ ｊａｙ", "b")])      # the rule check_descriptions applies
    with pytest.raises(SynthesisError, match="duplicate class name"):
        check_descriptions({"Blue Jay": "a", "ＢＬＵＥ ｊａｙ": "b"})
    with pytest.raises(SynthesisError, match="empty name"):
        check_descriptions(descriptions_from_pairs([("", "a"), (" ", "b"), ("Cardinal", "c")]))


def test_micro_batches_give_the_same_step(small_split, tmp_path, text_encoder, monkeypatch):
    """The full step with the backbone run on the batch in 3 parts: the weights after 2 steps are
    those of the one-part step up to float rounding (the meta-model's gradient is the same sum)."""
    import n3core.train as train_module

    parts_seen = []
    in_parts = train_module.backward_in_parts
    monkeypatch.setattr(train_module, "backward_in_parts",
                        lambda model, a, x, y, *rest: parts_seen.append(len(y)) or in_parts(model, a, x, y, *rest))
    runs = {}
    for parts in (1, 3):
        m, t = _cfgs(small_split, max_steps=2, eval_every=2, checkpoint_every=100, micro_batches=parts)
        train(m, t, tmp_path / f"mb{parts}", progress=False, backbone=make_tiny_backbone(), text_encoder=text_encoder)
        runs[parts], _, _ = load_checkpoint(tmp_path / f"mb{parts}" / "final")
    assert parts_seen == [6, 6], "only the 3-part run took the parted path, once per step"
    backbone = make_tiny_backbone()
    torch.manual_seed(0)                                  # as prepare_run, before building the model
    init = N3Model(tiny_config(text_dim=384), backbone).meta.state_dict()
    moved = sum(float((runs[1][k] - init[k]).abs().sum()) for k in init)
    differ = sum(float((runs[3][k] - runs[1][k]).abs().sum()) for k in init)
    assert moved > 0 and differ <= 1e-3 * moved, (differ, moved)
    with pytest.raises(ValueError, match="micro_batches"):
        TrainConfig(batch_size=4, micro_batches=5)
