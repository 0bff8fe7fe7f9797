"""The D-step and G-step objectives of GAT (official `RpGANPTLoss.step_disc` / `step_gen`).

E(.) below is DiffAugment followed by MNG noise. Reals are augmented once and copied to the K levels;
a fake's K levels share the augmentation drawn on its final level. The approximated R1/R2 passes reuse
the exact augmentation parameters and MNG noise draws of the clean pass (for reals the finite-difference
noise is added before copying, so it is shared by the levels; for fakes each level gets its own).

Precision, as the released code: under bf16 autocast only the networks run in bf16. G's output is cast to
float32 once (accelerate's wrapper does the same to the official G's output), so DiffAugment, the MNG noise
chain and the finite-difference perturbations x + sigma*eps run in float32; D's patch embedding rounds its
input to bf16 where it consumes it. (Perturbing a bf16 fake by sigma = 0.01 would mostly round it away.)

For speed, all D evaluations of the D step (reals, fakes, perturbed reals, perturbed fakes) run as one
batched forward; the REPA projector runs on the real rows only.
"""
from dataclasses import dataclass

import torch

from gatscale.models.diffaug import diff_augment, parse_policy
from gatscale.models.losses import approx_gradient_penalty, relativistic_d_loss, relativistic_g_loss, repa_loss
from gatscale.models.mng import MNGSchedule, build_schedule
from .encoders import RepaEncoder


@dataclass
class GATObjective:
    schedule: MNGSchedule
    policy: list[str]
    r1_gamma: float = 0.1
    r2_gamma: float = 0.1
    gp_sigma: float = 0.01
    repa_weight: float = 1.0
    encoder: RepaEncoder | None = None  # None: no REPA
    d_grid_size: int = 16               # D's token grid; encoder patch features are resized to it

    @classmethod
    def from_config(cls, cfg, encoder: RepaEncoder | None, d_grid_size: int):
        m = cfg.method
        return cls(
            schedule=build_schedule(m.mng, cfg.model.num_levels, m.mng_min_info, m.mng_t_offset),
            policy=parse_policy(m.augment), r1_gamma=m.r1_gamma, r2_gamma=m.r2_gamma, gp_sigma=m.gp_sigma,
            repa_weight=m.repa_weight, encoder=encoder if m.repa else None, d_grid_size=d_grid_size,
        )

    def _levels(self, real: torch.Tensor) -> torch.Tensor:
        return real.unsqueeze(0).expand(self.schedule.num_levels, *real.shape)

    def encoder_targets(self, raw_images: torch.Tensor, real_aug_params: dict):
        """Encoder features of the raw reals under the reals' translation/flip (official policy_raw_image)."""
        raw_policy = [op for op in ("translation", "flip") if op in self.policy]
        x, _ = diff_augment(self.encoder.preprocess(raw_images), raw_policy, real_aug_params)
        return self.encoder(x, self.d_grid_size)

    def discriminator_loss(self, G, D, real, y, z, raw_images=None):
        """L_D = RpGAN + gamma1/2 aR1 + gamma2/2 aR2 + lambda REPA, averaged over the batch."""
        B = real.shape[0]
        with torch.no_grad():
            fake = G(z, y, return_levels=True).float()  # (K, B, C, H, W)
        fake_aug, fake_params = diff_augment(fake, self.policy, draw_on=fake[-1])
        real_aug, real_params = diff_augment(real, self.policy)
        fake_in, fake_eps = self.schedule.perturb(fake_aug)
        real_in, real_eps = self.schedule.perturb(self._levels(real_aug))
        inputs = [real_in, fake_in]
        if self.r1_gamma > 0:
            real_p, _ = diff_augment(real + self.gp_sigma * torch.randn_like(real), self.policy, real_params)
            inputs.append(self.schedule.perturb(self._levels(real_p), real_eps)[0])
        if self.r2_gamma > 0:
            fake_p, _ = diff_augment(fake + self.gp_sigma * torch.randn_like(fake), self.policy, fake_params)
            inputs.append(self.schedule.perturb(fake_p, fake_eps)[0])

        x, y_all = torch.cat(inputs, dim=1), y.repeat(len(inputs))
        if self.encoder is not None:
            logits, proj_cls, proj_patch = D(x, y_all, features_for=slice(0, B))
        else:
            logits = D(x, y_all)
        parts = iter(logits.split(B))
        real_logits, fake_logits = next(parts), next(parts)

        adv = relativistic_d_loss(real_logits, fake_logits)
        loss = adv
        stats = {"loss/d_adv": adv.mean(), "logits/real": real_logits.float().mean(),
                 "logits/fake": fake_logits.float().mean()}
        if self.r1_gamma > 0:
            r1 = approx_gradient_penalty(real_logits, next(parts), self.gp_sigma)
            loss = loss + self.r1_gamma / 2 * r1
            stats["loss/r1"] = r1.mean()
        if self.r2_gamma > 0:
            r2 = approx_gradient_penalty(fake_logits, next(parts), self.gp_sigma)
            loss = loss + self.r2_gamma / 2 * r2
            stats["loss/r2"] = r2.mean()
        if self.encoder is not None:
            if raw_images is None:
                raise ValueError("REPA needs the raw real images (data.load_images: true)")
            enc_cls, enc_patch = self.encoder_targets(raw_images, real_params)
            align = repa_loss(proj_cls, proj_patch, enc_cls, enc_patch)
            loss = loss + self.repa_weight * align
            stats["loss/repa"] = align.mean()
        loss = loss.mean()
        stats["loss/d"] = loss.detach()
        return loss, {k: v.detach() for k, v in stats.items()}

    def generator_loss(self, G, D, real, y, z):
        """L_G = softplus(-(D(E(x_f)) - sg[D(E(x_r))])). (G's per-class w average is updated by the train step.)"""
        fake = G(z, y, return_levels=True).float()  # (K, B, C, H, W)
        fake_aug, _ = diff_augment(fake, self.policy, draw_on=fake[-1])
        real_aug, _ = diff_augment(real, self.policy)
        fake_in, _ = self.schedule.perturb(fake_aug)
        with torch.no_grad():
            real_in, _ = self.schedule.perturb(self._levels(real_aug))
            real_logits = D(real_in, y)
        fake_logits = D(fake_in, y)
        loss = relativistic_g_loss(fake_logits, real_logits).mean()
        return loss, {"loss/g": loss.detach()}
