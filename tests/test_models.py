import pytest
import torch

from gatscale.models import build_discriminator, build_generator, count_trainable

# ../shared/REFERENCE.md §13: trainable parameters of the official code (G without its unused
# input patch embedding; D with the REPA projector to 768-d).
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
    assert (count_trainable(g), count_trainable(d)) == OFFICIAL_COUNTS[name]
