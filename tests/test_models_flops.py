"""The analytic FLOP count equals torch.utils.flop_counter, and matches the paper's anchor."""
import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from gatscale.core.config import RunConfig, replace
from gatscale.models import build_discriminator, build_generator, parse_model_name
from gatscale.models.flops import discriminator_flops, generator_flops, run_flops, vit_encoder_flops


def counted(module, *inputs) -> int:
    with FlopCounterMode(display=False) as fc:
        module(*inputs)
    return fc.get_total_flops()


@pytest.mark.parametrize("name", ["GAT-S/2", "GAT-B/4", "GAT-L/8", "GAT-XL/2"])
@pytest.mark.parametrize("mng_on", [True, False])
def test_analytic_flops_equal_flop_counter(name, mng_on):
    levels = 4 if mng_on else 1
    with torch.device("meta"):
        G = build_generator(name, use_intermediate_heads=mng_on)
        D = build_discriminator(name, num_levels=levels, encoder_dim=0)
        y = torch.zeros(1, dtype=torch.long)
        g = counted(G, torch.randn(1, 64), y)
        d = counted(D, torch.randn(levels, 1, 4, 32, 32), y)
    arch = parse_model_name(name)
    assert generator_flops(**arch, use_intermediate_heads=mng_on) == g
    assert discriminator_flops(**arch, num_levels=levels) == d


def test_encoder_flops_equal_flop_counter():
    import timm
    with torch.device("meta"):
        vit = timm.create_model("vit_base_patch14_dinov2", pretrained=False, img_size=224, num_classes=0)
        n = counted(vit.forward_features, torch.randn(1, 3, 224, 224))
    assert vit_encoder_flops() == n


def test_gat_xl2_generator_is_119_paper_gflops():
    cfg = replace(RunConfig(), **{"model.generator.size": "GAT-XL/2", "model.discriminator.size": "GAT-XL/2",
                                  "data.tokenizer": "sd-vae", "data.resolution": 256, "data.num_classes": 1000})
    f = run_flops(cfg)
    assert f.g_paper_gflops == pytest.approx(118.6, abs=0.5)  # DiT-XL/2: 118.6; GAT-XL/2: ~119
    # one iteration costs much more than 4x the G forward: D runs on 4 batches with backward
    assert f.iteration > 10 * f.g_forward * cfg.train.batch_size


def _tiny_digits_cfg(**changes):
    return replace(RunConfig(), **{"model.generator.size": "GAT-S/2", "model.discriminator.size": "GAT-S/2",
                                   "model.generator.hidden_size": 64, "model.discriminator.hidden_size": 64,
                                   "model.generator.num_heads": 2, "model.discriminator.num_heads": 2,
                                   "model.projector_dim": 64, "train.batch_size": 8, **changes})


@pytest.mark.parametrize("encoder", [
    {"encoder.name": "digits-vit"},
    {"encoder.name": "vit_tiny_patch16_224", "encoder.pretrained": False, "encoder.resolution": 32,
     "encoder.kwargs": {"patch_size": 4, "embed_dim": 32, "depth": 2, "num_heads": 2}},
])
def test_run_flops_counts_the_configured_repa_encoder_and_projector(encoder):
    from gatscale.models.flops import encoder_arch, projector_flops
    from gatscale.networks.encoders import build_encoder

    cfg, no_repa = _tiny_digits_cfg(**encoder), _tiny_digits_cfg(**encoder, **{"method.repa": False})
    from gatscale.networks.digits_nets import build_digits_vit

    with torch.device("meta"):  # the digits encoder's architecture, untrained (on CPU the counter misses SDPA)
        vit = build_digits_vit() if encoder["encoder.name"] == "digits-vit" else build_encoder(cfg.encoder).model
        res = vit.patch_embed.img_size[0]
        n = counted(vit.forward_features, torch.randn(1, 3, res, res))
    assert vit_encoder_flops(**encoder_arch(cfg.encoder)) == n
    tokens = (16 // 2) ** 2 + 1
    projector = projector_flops(64, tokens, 64, vit.num_features)
    assert (run_flops(cfg).iteration - run_flops(no_repa).iteration) == (n + 3 * projector) * 8
    # the default (DINOv2 ViT-B/14 at 224 px, 2048-wide projector) would cost far more than the tiny encoder
    default = _tiny_digits_cfg()
    assert run_flops(default).iteration - run_flops(no_repa).iteration > 100 * (n + 3 * projector) * 8


def test_run_flops_refuses_an_encoder_it_cannot_count():
    from gatscale.core.config import EncoderConfig
    from gatscale.models.flops import encoder_arch

    with pytest.raises(ValueError, match="encoder.name = 'resnet50': cannot count its FLOPs"):
        encoder_arch(EncoderConfig(name="resnet50"))
