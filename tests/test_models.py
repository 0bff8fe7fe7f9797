import pytest
import torch

from gatscale.models import build_discriminator, build_generator, count_official, count_trainable

# The official code's "trainable parameters" (docs/method.md, parameter counts; requires_grad at construction: G
# without its unused input patch embedding and D with the REPA projector to 768-d, both without the sin-cos
# pos_embed that its modules declare frozen and its train.py then trains).
OFFICIAL_COUNTS = {
    "GAT-XL/2": (601936640, 467383872), "GAT-XL/4": (602158016, 467605056), "GAT-XL/8": (603043520, 468489792),
    "GAT-L/2": (408469024, 322773728), "GAT-L/4": (408665824, 322970336), "GAT-L/8": (409453024, 323756768),
    "GAT-B/2": (116545088, 104480256), "GAT-B/4": (116692736, 104627712), "GAT-B/8": (117283328, 105217536),
    "GAT-S/2": (29256512, 39114624), "GAT-S/4": (29330432, 39188352), "GAT-S/8": (29626112, 39483264),
}


@pytest.mark.parametrize("name", OFFICIAL_COUNTS)
def test_parameter_counts_equal_official_code(name):
    with torch.device("meta"):
        g, d = build_generator(name), build_discriminator(name)
    assert (count_official(g), count_official(d)) == OFFICIAL_COUNTS[name]
    tokens = (32 // g.patch_size) ** 2
    assert (count_trainable(g), count_trainable(d)) == tuple(n + tokens * g.hidden_size for n in OFFICIAL_COUNTS[name])


TINY = dict(depth=4, hidden_size=32, num_heads=2, input_size=8, in_channels=3, num_classes=2)


@pytest.mark.parametrize("build", [build_generator, build_discriminator])
def test_pos_embed_switch_decides_whether_the_sincos_embedding_trains(build):
    trainable, frozen = build("GAT-S/2", **TINY), build("GAT-S/2", **TINY, pos_embed="frozen")
    assert any(p is trainable.pos_embed for p in trainable.parameters()) and trainable.pos_embed.requires_grad
    assert all(p is not frozen.pos_embed for p in frozen.parameters()) and "pos_embed" not in frozen.state_dict()
    frozen.requires_grad_(True)  # what the official train.py does every step: a buffer stays frozen
    assert not frozen.pos_embed.requires_grad
    assert count_trainable(trainable) - count_trainable(frozen) == 16 * 32 == trainable.pos_embed.numel()
    assert count_official(trainable) == count_official(frozen) == count_trainable(frozen)
    assert torch.equal(trainable.pos_embed, frozen.pos_embed)


def test_w_avg_update_works_in_float64():
    G = build_generator("GAT-S/2", **TINY).double()
    w = G.mapping_network(torch.randn(4, 64, dtype=torch.float64), torch.tensor([0, 0, 1, 1]))
    G.update_w_avg(*G.w_class_sums(w, torch.tensor([0, 0, 1, 1])))
    assert G.w_avg.dtype == torch.float64
    expected = torch.stack([w[:2].mean(0), w[2:].mean(0)]) * (1 - G.w_avg_beta)
    assert torch.allclose(G.w_avg, expected, rtol=1e-12)
