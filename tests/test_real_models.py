"""N3 with the real Lite0 and MiniLM weights on real CUB photos."""
from __future__ import annotations

import torch

from n3core.data import load_descriptions, description_file, load_split
from n3core.imagecache import ImageCache
from n3core.meta import N3Config, N3Model
from n3core.preprocess import PreprocessSpec


def test_a_few_training_steps_lower_the_loss(lite0, text_encoder, cub, data_root):
    """Full adaptation of the real network: 12 Adam steps on one episode lower its loss."""
    split = load_split(data_root, "ss0")
    classes = split["train"][:4]
    desc = load_descriptions(description_file(data_root), classes)
    recs = [cub.records[i] for c in classes for i in cub.indices(c)[:4]]
    spec = PreprocessSpec.for_backbone(lite0, 96)
    cache = ImageCache(recs, spec, use_disk=False, progress=False)
    y = torch.tensor([classes.index(r.label) for r in recs])
    enc = text_encoder.encode([desc[c] for c in classes])
    torch.manual_seed(0)
    model = N3Model(N3Config(image_size=96, dropout=0.0, token_dropout=0.0), lite0)
    model.train()
    opt = torch.optim.Adam(model.meta.parameters(), lr=1e-3)
    x = spec.augment(cache.images, torch.Generator().manual_seed(0))
    losses = []
    for _ in range(12):
        a = model.meta(enc.states, enc.mask)
        loss = torch.nn.functional.cross_entropy(a.classify(model.features(x, a)), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.7 * losses[0], losses
    grads = [p.grad for p in model.meta.decoders.parameters()]
    assert all(g is not None for g in grads), "every layer's decoder is trained"


def test_real_classifier_exports_and_runs_in_a_fresh_process(lite0, text_encoder, cub, tmp_path):
    import subprocess
    import sys

    from n3core.synthesize import Synthesizer

    torch.manual_seed(0)
    synth = Synthesizer(N3Model(N3Config(mu_init=0.05), lite0), text_encoder)
    clf = synth.synthesize({"goldfinch": "Small yellow finch with black wings.",
                            "jay": "Blue crested bird with a white face.", "duck": "A duck with a green head."})
    assert clf.info["mode"] == "full"
    # the merged network differs from the pretrained one (the adaptation is really merged in)
    stem = dict(clf.backbone.named_parameters())["conv_stem.weight"]
    assert not torch.equal(stem, lite0.module.conv_stem.weight)
    from n3core.data import load_image

    ims = [load_image(cub.records[i].path) for i in cub.indices("047.American_Goldfinch")[:3]]
    x = clf.prepare(ims)
    ref = clf.predict(x)
    path = clf.export(tmp_path / "c.pt2")
    torch.save(x, tmp_path / "x.pt")
    code = (f"import torch; m = torch.export.load({str(path)!r}).module(); x = torch.load({str(tmp_path / 'x.pt')!r});"
            f"torch.save(m(x).softmax(-1), {str(tmp_path / 'p.pt')!r})")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert torch.allclose(torch.load(tmp_path / "p.pt"), ref, atol=1e-4)
