"""The GAT losses, one function per equation. All return per-sample values (B,); callers average.

Relativistic pairing (RpGAN, as R3GAN) with class-matched, index-paired real/fake logits:
    L_D = softplus(-(D(x_r) - D(x_f)))          L_G = softplus(-(D(x_f) - sg[D(x_r)]))
Approximated R1/R2 (official `approximated_gradient_penalty`): a finite difference along a random
direction, ((D(x) - D(x + sigma*eps)) / sigma)^2, whose expectation tends to ||grad_x D||^2 as
sigma -> 0; weighted by gamma/2.
REPA on D: (1 - cos(P(h_cls), f_cls)) + mean_i (1 - cos(P(h_i), f_i)) against encoder features of reals.
"""
import torch
import torch.nn.functional as F


def relativistic_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-(real_logits.float() - fake_logits.float()))


def relativistic_g_loss(fake_logits: torch.Tensor, real_logits: torch.Tensor) -> torch.Tensor:
    return F.softplus(-(fake_logits.float() - real_logits.float().detach()))


def approx_gradient_penalty(logits: torch.Tensor, perturbed_logits: torch.Tensor, sigma: float) -> torch.Tensor:
    """((D(x) - D(x + sigma*eps)) / sigma)^2; gradients flow through both terms, as the official code."""
    return ((logits.float() - perturbed_logits.float()) / sigma).square()


def exact_gradient_penalty(logits: torch.Tensor, inputs: torch.Tensor) -> torch.Tensor:
    """||grad_x D(x)||^2 per sample through autograd (R1 when x are reals, R2 when fakes)."""
    (grad,) = torch.autograd.grad(logits.sum(), inputs, create_graph=True)
    return grad.square().flatten(1).sum(1)


def repa_loss(proj_cls: torch.Tensor, proj_patch: torch.Tensor, enc_cls: torch.Tensor,
              enc_patch: torch.Tensor) -> torch.Tensor:
    """Negative cosine alignment of D's projected tokens with the encoder's (cls + mean over patches)."""
    cls_term = 1 - F.cosine_similarity(proj_cls.float(), enc_cls.float(), dim=-1)
    patch_term = (1 - F.cosine_similarity(proj_patch.float(), enc_patch.float(), dim=-1)).mean(dim=1)
    return cls_term + patch_term
