"""Sample generation for evaluation: exact counts, balanced classes, truncation, ADM .npz export."""
import numpy as np
import pytest
import torch

from eval_fixtures import tiny_generator
from gatscale.data.vae import build_tokenizer
from gatscale.eval.samples import NpzWriter, balanced_labels, generate_images


@pytest.mark.parametrize("n", [1, 7, 10, 1003])
def test_balanced_labels_give_exactly_n_with_class_counts_within_one(n):
    labels = balanced_labels(n, 10, seed=3)
    counts = torch.bincount(labels, minlength=10)
    assert len(labels) == n and labels.dtype == torch.int64
    assert counts.max() - counts.min() <= 1
    assert torch.equal(labels, balanced_labels(n, 10, seed=3))


def test_balanced_labels_depend_on_the_seed():
    assert not torch.equal(balanced_labels(100, 10, seed=0), balanced_labels(100, 10, seed=1))


def test_generator_yields_exactly_the_requested_uint8_images_with_balanced_classes():
    G = tiny_generator()
    batches = list(generate_images(G, build_tokenizer("pixels"), num_samples=23, batch_size=8, seed=0))
    images = torch.cat([x for x, _ in batches])
    labels = torch.cat([y for _, y in batches])
    assert [len(x) for x, _ in batches] == [8, 8, 7]
    assert images.shape == (23, 3, 16, 16) and images.dtype == torch.uint8
    counts = torch.bincount(labels, minlength=10)
    assert counts.max() - counts.min() <= 1
    again = torch.cat([x for x, _ in generate_images(G, build_tokenizer("pixels"), 23, batch_size=5, seed=0)])
    assert torch.equal(images, again)  # a function of the seed, not of the batch size


def test_truncation_psi_one_collapses_each_class_to_its_mean_image():
    G = tiny_generator()
    G.w_avg.copy_(torch.randn_like(G.w_avg))
    tok = build_tokenizer("pixels")

    def per_class(psi):
        x, y = map(torch.cat, zip(*generate_images(G, tok, num_samples=30, batch_size=30, truncation_psi=psi)))
        return [x[y == c] for c in range(10)]

    truncated, free = per_class(1.0), per_class(0.0)
    assert all(torch.equal(imgs, imgs[:1].expand_as(imgs)) for imgs in truncated)
    assert not torch.equal(truncated[0][0], truncated[1][0])  # different classes keep different means
    assert all(not torch.equal(imgs[0], imgs[1]) for imgs in free)


def test_npz_export_is_the_adm_layout_and_never_left_partial(tmp_path):
    images = torch.randint(0, 256, (5, 3, 4, 4), dtype=torch.uint8)
    labels = torch.tensor([0, 1, 2, 3, 4])
    with NpzWriter(tmp_path / "s.npz", 5, 4) as w:
        w.write(images[:3], labels[:3])
        w.write(images[3:], labels[3:])
    data = np.load(tmp_path / "s.npz")
    assert data["arr_0"].shape == (5, 4, 4, 3) and data["arr_0"].dtype == np.uint8
    assert np.array_equal(data["arr_0"], images.permute(0, 2, 3, 1).numpy())
    assert np.array_equal(data["arr_1"], labels.numpy())

    with pytest.raises(ValueError, match="got 3 images, announced 5"):
        with NpzWriter(tmp_path / "short.npz", 5, 4) as w:
            w.write(images[:3], labels[:3])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.npz"]


@pytest.mark.parametrize("precision, dtype", [("fp32", torch.float32), ("bf16", torch.bfloat16)])
def test_samples_run_g_in_float32_by_default_even_inside_a_callers_autocast(precision, dtype):
    G, seen = tiny_generator(), []
    G.heads[-1].register_forward_hook(lambda module, args, out: seen.append(out.dtype))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # e.g. the training step's
        list(generate_images(G, build_tokenizer("pixels"), num_samples=4, batch_size=4, precision=precision))
    assert seen == [dtype]
