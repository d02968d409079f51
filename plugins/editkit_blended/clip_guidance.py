"""CLIP guidance of Blended Diffusion: extending augmentations, spherical distance, range loss, ranking."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def spherical_distance(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """2 arcsin(|x - y| / 2)^2 of L2-normalised embeddings (Blended Diffusion's ``d_clip_loss``)."""
    x, y = F.normalize(x, dim=-1), F.normalize(y, dim=-1)
    return (x - y).norm(dim=-1).div(2).clamp(max=1.0).arcsin().pow(2).mul(2)


def extending_augmentations(images: torch.Tensor, views: int, generator: torch.Generator) -> torch.Tensor:
    """(B, C, H, W) -> (B * views, C, H, W), sample-major: view 0 of each image is unaugmented, the others get a
    random affine (rotation up to 15 degrees, translation up to 10%, each with probability 0.7) and a random
    perspective warp (distortion 0.7, probability 0.7), drawn per view and image. Differentiable (grid sampling)."""
    b, _, h, w = images.shape
    if views == 1:
        return images
    n = b * (views - 1)
    dev = images.device

    def draw(*shape):
        return torch.rand(*shape, generator=generator).to(dev)

    # affine part: rotation and translation in normalised coordinates
    use_affine = (draw(n) < 0.7).float()
    angle = (draw(n) * 2 - 1) * torch.pi * 15 / 180 * use_affine
    shift = (draw(n, 2) * 2 - 1) * 0.2 * use_affine[:, None]  # 10% of the side = 0.2 in [-1, 1] units
    cos, sin = angle.cos(), angle.sin()
    affine = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1),
                          torch.tensor([0.0, 0.0, 1.0], device=dev).expand(n, 3)], 1)
    # perspective part: a homography moving each corner by up to 0.7 / 2 of the half side
    use_persp = (draw(n) < 0.7).float()[:, None, None]
    corners = torch.tensor([[-1.0, -1.0], [1.0, -1.0], [1.0, 1.0], [-1.0, 1.0]], device=dev)
    moved = corners + (draw(n, 4, 2) * 2 - 1) * 0.35 * use_persp * -corners.sign().neg()
    homography = _homography(corners.expand(n, 4, 2), moved) @ affine
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, h, device=dev), torch.linspace(-1, 1, w, device=dev), indexing="ij")
    grid = torch.stack([xs, ys, torch.ones_like(xs)], -1).reshape(1, -1, 3)
    warped = grid @ homography.transpose(1, 2)
    warped = (warped[..., :2] / warped[..., 2:].clamp(min=1e-6)).reshape(n, h, w, 2)
    src = images.repeat_interleave(views - 1, 0)
    augmented = F.grid_sample(src, warped.to(images.dtype), mode="bilinear", padding_mode="border", align_corners=True)
    out = torch.cat([images[:, None], augmented.view(b, views - 1, *images.shape[1:])], 1)
    return out.reshape(b * views, *images.shape[1:])


def _homography(src: torch.Tensor, dst: torch.Tensor) -> torch.Tensor:
    """Batched 3x3 homographies mapping 4 points ``src`` to ``dst`` (N, 4, 2) (direct linear transform)."""
    n = src.shape[0]
    x, y = src[..., 0], src[..., 1]
    u, v = dst[..., 0], dst[..., 1]
    zeros, ones = torch.zeros_like(x), torch.ones_like(x)
    rows_u = torch.stack([x, y, ones, zeros, zeros, zeros, -u * x, -u * y], -1)
    rows_v = torch.stack([zeros, zeros, zeros, x, y, ones, -v * x, -v * y], -1)
    a = torch.cat([rows_u, rows_v], 1)
    b = torch.cat([u, v], 1)
    h = torch.linalg.solve(a, b)
    return torch.cat([h, torch.ones(n, 1, device=src.device)], 1).view(n, 3, 3)


def range_loss(pixels: torch.Tensor) -> torch.Tensor:
    """Per-sample mean of the squared excess outside [-1, 1]."""
    return (pixels - pixels.clamp(-1, 1)).pow(2).flatten(1).mean(1)


def masked_view(pixels: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] multiplied by the mask: mid-grey outside, as Blended Diffusion shows CLIP the region."""
    return pixels * masks
