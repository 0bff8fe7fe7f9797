"""The GAT method parts: MNG, DiffAugment, losses, width-aware LR, and the D/G objectives."""
import math

import pytest
import torch

from core_fixtures import tiny_models, toy_batch
from gatscale.core.config import RunConfig, effective_lr, replace
from gatscale.models import build_discriminator, build_generator
from gatscale.models.diffaug import diff_augment, draw_params, parse_policy
from gatscale.models.losses import approx_gradient_penalty, exact_gradient_penalty
from gatscale.models.mng import build_schedule, mng_noise_levels
from gatscale.networks.objective import GATObjective

POLICY = parse_policy("color,translation,cutout,flip")


def test_mng_noise_levels_match_official_schedule():
    assert mng_noise_levels(4) == pytest.approx([0.885, 0.76, 0.51, 0.01])
    assert build_schedule("exp").signal == pytest.approx((0.115, 0.24, 0.49, 0.99))
    assert build_schedule("vp").signal == pytest.approx((0.125, 0.25, 0.5, 1.0))
    assert build_schedule("vp").noise_std[-1] == 0.0
    linear = mng_noise_levels(4, variant="linear")
    assert linear == pytest.approx([0.885, 0.885 - 0.875 / 3, 0.885 - 2 * 0.875 / 3, 0.01])
    assert build_schedule("off").num_levels == 1


@pytest.mark.parametrize("variant", ["exp", "linear", "vp"])
def test_mng_noise_is_coupled_like_a_forward_chain(variant):
    """n_k has variance s_k^2 and Cov(n_k, n_{k+1}) = (a_k / a_{k+1}) s_{k+1}^2."""
    sched = build_schedule(variant)
    torch.manual_seed(0)
    zeros = torch.zeros(4, 200_000, 1, 1, 1, dtype=torch.float64)
    noise, _ = sched.perturb(zeros)
    n = noise.flatten(1)
    for k in range(4):
        assert n[k].var().item() == pytest.approx(sched.noise_std[k] ** 2, rel=0.02, abs=1e-6)
    for k in range(3):
        cov = (n[k] * n[k + 1]).mean().item()
        expected = sched.signal[k] / sched.signal[k + 1] * sched.noise_std[k + 1] ** 2
        assert cov == pytest.approx(expected, rel=0.05, abs=1e-4)


def test_mng_reuses_noise_draws_and_scales_signal():
    sched = build_schedule("exp")
    x = torch.randn(4, 2, 3, 8, 8)
    a, eps = sched.perturb(x)
    b, _ = sched.perturb(x, eps)
    assert torch.equal(a, b)
    clean, _ = sched.perturb(x, torch.zeros_like(x))
    assert torch.allclose(clean, torch.tensor(sched.signal).view(4, 1, 1, 1, 1) * x)


def test_diffaugment_params_are_reusable_and_shared_across_levels():
    levels = torch.randn(4, 6, 3, 8, 8)
    aug, params = diff_augment(levels, POLICY, draw_on=levels[-1])
    again, _ = diff_augment(levels, POLICY, params)
    assert torch.equal(aug, again)
    # every level gets the same geometric transform: apply to identical levels -> identical outputs
    same = levels[-1].expand(4, *levels.shape[1:])
    out, _ = diff_augment(same, POLICY, params)
    assert all(torch.equal(out[0], out[k]) for k in range(1, 4))
    assert not torch.equal(aug, levels)


def test_diffaugment_ops_follow_official_ranges():
    torch.manual_seed(0)
    x = torch.randn(4000, 4, 32, 32)
    p = draw_params(x, POLICY)
    assert p["color"]["mask"].float().mean().item() == pytest.approx(0.5, abs=0.03)
    assert p["flip"]["mask"].float().mean().item() == pytest.approx(0.4, abs=0.03)
    assert p["translation"]["dy"].abs().max().item() == 4  # 1/8 of 32
    ones = torch.ones(4000, 1, 32, 32)
    cut, _ = diff_augment(ones, ["cutout"], p)
    zeroed = (cut == 0).flatten(1).sum(1).float()
    assert zeroed.max().item() == 16 * 16  # a half-size square, fully inside for central offsets
    # translation by (dy, dx) moves a single bright pixel there (zero padding outside)
    img = torch.zeros(1, 1, 32, 32)
    img[0, 0, 10, 10] = 1
    shift = dict(dy=torch.tensor([[3]]), dx=torch.tensor([[-2]]), size=(32, 32))
    moved, _ = diff_augment(img, ["translation"], {"translation": shift})
    assert moved[0, 0].nonzero().tolist() == [[7, 12]]


def test_approx_r1_tends_to_exact_gradient_penalty():
    """E_eps ((D(x) - D(x + sigma eps)) / sigma)^2 -> ||grad D(x)||^2 as sigma -> 0.

    The expectation is taken exactly with eps over the scaled basis sqrt(d) e_i.
    """
    torch.manual_seed(0)
    D = build_discriminator("GAT-S/2", depth=1, hidden_size=16, num_heads=2, input_size=4, in_channels=2,
                            num_classes=2, num_levels=1, cmap_dim=8, encoder_dim=0).double()
    x = torch.randn(1, 1, 2, 4, 4, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([1])
    exact = exact_gradient_penalty(D(x, y), x).item()
    d = x.numel()
    basis = torch.eye(d, dtype=torch.float64).view(d, 1, 2, 4, 4).transpose(0, 1) * math.sqrt(d)
    errors = []
    for sigma in (1e-1, 1e-2, 1e-3):
        with torch.no_grad():
            base = D(x, y)
            pert = D(x.detach() + sigma * basis, y.repeat(d))
        approx = approx_gradient_penalty(base.expand(d), pert, sigma).mean().item()
        errors.append(abs(approx - exact) / exact)
    assert errors[2] < errors[1] < errors[0]
    assert errors[2] < 1e-2


def test_width_aware_lr():
    cfg = RunConfig()
    for size, width in (("GAT-S/2", 384), ("GAT-B/2", 768), ("GAT-L/2", 1024), ("GAT-XL/2", 1152)):
        c = replace(cfg, **{"model.generator.size": size, "data.tokenizer": "sd-vae", "data.resolution": 256})
        assert effective_lr(c, "generator") == pytest.approx(2e-4 * 768 / width)
    off = replace(cfg, **{"model.generator.size": "GAT-S/2", "optim.width_aware_lr": False})
    assert effective_lr(off, "generator") == 2e-4
    tiny = replace(cfg, **{"model.discriminator.hidden_size": 64, "model.discriminator.num_heads": 2,
                           "optim.base_width": 32})
    assert effective_lr(tiny, "discriminator") == pytest.approx(1e-4)


def _grads_after_g_step(mng_on: bool):
    G, D, enc = tiny_models(mng_on=mng_on)
    obj = GATObjective(build_schedule("exp" if mng_on else "off"), POLICY, encoder=enc, d_grid_size=4)
    x, y, _ = toy_batch()
    D.requires_grad_(False)
    loss, _ = obj.generator_loss(G, D, x, y, torch.randn(len(y), G.z_dim))
    loss.backward()
    heads = [sum(p.grad.abs().sum().item() if p.grad is not None else 0.0 for p in h.parameters()) for h in G.heads]
    blocks = [sum(p.grad.abs().sum().item() for p in b.parameters() if p.grad is not None) for b in G.blocks]
    return heads, blocks


def test_mng_off_gives_no_gradient_to_intermediate_heads():
    heads, blocks = _grads_after_g_step(mng_on=False)
    assert heads[:3] == [0.0, 0.0, 0.0] and heads[3] > 0
    assert all(b > 0 for b in blocks)


def test_mng_on_gives_gradient_to_every_head_and_block():
    heads, blocks = _grads_after_g_step(mng_on=True)
    assert all(h > 0 for h in heads) and all(b > 0 for b in blocks)


def test_generator_levels_accumulate_like_residuals():
    torch.manual_seed(0)
    G = build_generator("GAT-S/2", depth=4, hidden_size=32, num_heads=2, input_size=8, in_channels=3, num_classes=2)
    z, y = torch.randn(3, 64), torch.tensor([0, 1, 1])
    levels = G(z, y, return_levels=True)
    assert levels.shape == (4, 3, 3, 8, 8)
    assert torch.equal(levels[-1], G(z, y))
    for head in G.heads[1:]:  # zero a head's output linear -> that level equals the previous one
        torch.nn.init.zeros_(head.linear.weight), torch.nn.init.zeros_(head.linear.bias)
    levels = G(z, y, return_levels=True)
    assert all(torch.allclose(levels[0], levels[k]) for k in range(1, 4))


def test_truncation_psi_one_collapses_a_class_to_its_mean_w():
    torch.manual_seed(0)
    G = build_generator("GAT-S/2", depth=4, hidden_size=32, num_heads=2, input_size=8, in_channels=3, num_classes=2)
    y = torch.zeros(64, dtype=torch.long)
    G.update_w_avg(*G.w_class_sums(G.mapping_network(torch.randn(64, 64), y), y))
    assert G.w_avg[0].abs().sum() > 0 and G.w_avg[1].abs().sum() == 0  # only classes present are updated
    out = G(torch.randn(5, 64), torch.zeros(5, dtype=torch.long), truncation_psi=1.0)
    assert torch.allclose(out, out[:1].expand_as(out), atol=1e-5)


def test_fourier_input_tokens_option():
    G = build_generator("GAT-S/2", depth=4, hidden_size=32, num_heads=2, input_size=8, in_channels=3,
                        num_classes=2, input_tokens="fourier")
    assert G(torch.randn(2, 64), torch.tensor([0, 1])).shape == (2, 3, 8, 8)


def _one_iteration(seed: int):
    G, D, enc = tiny_models(seed=0)
    obj = GATObjective(build_schedule("exp"), POLICY, encoder=enc, d_grid_size=4)
    opt_d = torch.optim.AdamW(D.parameters(), lr=1e-3, betas=(0.0, 0.99))
    opt_g = torch.optim.AdamW(G.parameters(), lr=1e-3, betas=(0.0, 0.99))
    x, y, raw = toy_batch()
    torch.manual_seed(seed)
    z = torch.randn(len(y), G.z_dim)
    loss_d, _ = obj.discriminator_loss(G, D, x, y, z, raw)
    loss_d.backward()
    opt_d.step()
    D.requires_grad_(False)
    loss_g, _ = obj.generator_loss(G, D, x, y, z)
    loss_g.backward()
    opt_g.step()
    return loss_d.item(), loss_g.item(), [p.detach().clone() for p in list(G.parameters()) + list(D.parameters())]


def test_one_d_and_g_step_is_deterministic_for_a_seed():
    a, b, c = _one_iteration(seed=1), _one_iteration(seed=1), _one_iteration(seed=2)
    assert a[:2] == b[:2] and all(torch.equal(p, q) for p, q in zip(a[2], b[2]))
    assert a[:2] != c[:2]


def test_repa_loss_is_zero_when_projections_equal_targets():
    from gatscale.models.losses import repa_loss
    cls, patch = torch.randn(3, 8), torch.randn(3, 5, 8)
    assert torch.allclose(repa_loss(cls, patch, 2 * cls, 3 * patch), torch.zeros(3), atol=1e-6)
    assert (repa_loss(cls, patch, -cls, -patch) > 3.9).all()


def _r2_rows_at_d_input(autocast: bool):
    """D's input rows for the fakes and their approx-R2 copies (fake + sigma*eps, augmented, MNG-noised)."""
    G, _, _ = tiny_models(repa=False)
    obj = GATObjective(build_schedule("exp"), POLICY, r1_gamma=0.0, d_grid_size=4)
    seen = []

    def D(levels, y):
        seen.append(levels)
        return levels.float().sum(dim=(0, 2, 3, 4))

    x, y, _ = toy_batch()
    torch.manual_seed(0)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        obj.discriminator_loss(G, D, x, y, torch.randn(len(y), G.z_dim))
    _, fakes, perturbed = seen[0].chunk(3, dim=1)  # rows: reals, fakes, perturbed fakes
    return fakes, perturbed


def test_r2_finite_difference_under_bf16_autocast_is_as_accurate_as_the_official_code():
    """The official loss side runs in float32 and D's patch embedding rounds its input to bf16 once; the
    difference D sees between the perturbed and the clean fake must be no less accurate than that."""
    clean_32, perturbed_32 = _r2_rows_at_d_input(autocast=False)
    clean, perturbed = _r2_rows_at_d_input(autocast=True)
    exact = perturbed_32 - clean_32  # sigma * (augmented, MNG-scaled eps): independent of the fake's values

    def relative_error(difference):
        return ((difference - exact).norm() / exact.norm()).item()

    def at_patch_embed(t):  # where D consumes its input, autocast rounds it to bf16
        return t.to(torch.bfloat16).float()

    assert clean.dtype == perturbed.dtype == torch.float32
    assert relative_error(perturbed - clean) < 1e-3  # loss side in float32: no bf16 rounding before D
    official = relative_error(at_patch_embed(perturbed_32) - at_patch_embed(clean_32))
    assert relative_error(at_patch_embed(perturbed) - at_patch_embed(clean)) <= 1.1 * official
