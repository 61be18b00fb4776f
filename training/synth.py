"""Training-volume synthesis on the model grid from the 1 mm MNI maps (torch only).

One `grid_sample` per volume warps the stacked 1 mm maps (t1, gm, wm, brain) onto an
RAS output grid through a random affine (rotation, scaling, translation) plus a smooth
elastic field (a coarse random displacement grid upsampled trilinearly). Then either
  (a) SynthSeg-style domain randomization from the soft tissue maps (`synth_contrast`), or
  (b) the real T1 with ordinary augmentation (`real_contrast`),
and the contract's percentile harmonization over a foreground mask (`harmonize`).
All randomness comes from the `torch.Generator` passed in.
"""
import math

import numpy as np
import torch
import torch.nn.functional as F


def load_cache(path):
    z = np.load(path)
    src = torch.from_numpy(np.stack([z["t1"], z["gm"], z["wm"], z["brain"].astype(np.float32)]))[None]
    aff = torch.from_numpy(z["affine"]).double()
    brain_idx = np.argwhere(z["brain"] > 0)
    center_vox = brain_idx.mean(axis=0)
    center_world = (z["affine"] @ np.r_[center_vox, 1.0])[:3]
    return {"src": src.float(), "affine": aff, "center": torch.tensor(center_world, dtype=torch.float64)}


def U(g, lo, hi, size=()):
    return lo + (hi - lo) * torch.rand(size, generator=g, dtype=torch.float64)


def N(g, size=()):
    return torch.randn(size, generator=g, dtype=torch.float64)


def rotation(angles):
    a, b, c = [float(x) for x in angles]
    rx = torch.tensor([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]], dtype=torch.float64)
    ry = torch.tensor([[math.cos(b), 0, math.sin(b)], [0, 1, 0], [-math.sin(b), 0, math.cos(b)]], dtype=torch.float64)
    rz = torch.tensor([[math.cos(c), -math.sin(c), 0], [math.sin(c), math.cos(c), 0], [0, 0, 1]], dtype=torch.float64)
    return rz @ ry @ rx


def grid_affine(shape, spacing, center):
    """RAS grid of `shape` voxels at `spacing` mm whose centre is the world point `center`."""
    a = torch.eye(4, dtype=torch.float64)
    a[:3, :3] = torch.diag(torch.tensor([spacing] * 3, dtype=torch.float64))
    half = (torch.tensor(shape, dtype=torch.float64) - 1) / 2 * spacing
    a[:3, 3] = center - half
    return a


def warp(data, g, shape, spacing, max_rot_deg=15.0, max_scale=0.10, max_shift_mm=10.0, elastic_mm=3.0,
         identity=False):
    """Sample the cache's maps on a randomly deformed RAS grid. Returns [4, *shape] (t1, gm, wm, brain)
    and the output grid affine (world coordinates of the undeformed grid)."""
    out_aff = grid_affine(shape, spacing, data["center"])
    world_of_out = out_aff.clone()  # output voxel -> world
    if not identity:
        rot = rotation(U(g, -1, 1, (3,)) * math.radians(max_rot_deg))
        m = rot @ torch.diag(1 + U(g, -max_scale, max_scale, (3,)))
        shift = U(g, -max_shift_mm, max_shift_mm, (3,))
        c = data["center"]
        t = torch.eye(4, dtype=torch.float64)
        t[:3, :3] = m
        t[:3, 3] = c + shift - m @ c
        world_of_out = t @ world_of_out
    src_dims = torch.tensor(data["src"].shape[2:], dtype=torch.float64)
    out_dims = torch.tensor(shape, dtype=torch.float64)
    # normalized (align_corners=True) <-> voxel: v = (u + 1) (n - 1) / 2
    out_from_norm = torch.eye(4, dtype=torch.float64)
    out_from_norm[:3, :3] = torch.diag((out_dims - 1) / 2)
    out_from_norm[:3, 3] = (out_dims - 1) / 2
    norm_from_src = torch.eye(4, dtype=torch.float64)
    norm_from_src[:3, :3] = torch.diag(2 / (src_dims - 1))
    norm_from_src[:3, 3] = -1
    src_from_world = torch.linalg.inv(data["affine"])
    full = norm_from_src @ src_from_world @ world_of_out @ out_from_norm  # (i,j,k) order on both sides
    perm = [2, 1, 0]
    theta = full[:3, :4][perm][:, perm + [3]]
    grid = F.affine_grid(theta[None].float(), [1, 1, *shape], align_corners=True)
    if not identity and elastic_mm > 0:
        coarse = N(g, (1, 3, 5, 5, 5)).float() * float(U(g, 0, elastic_mm))  # mm, world axes
        lin = (norm_from_src @ src_from_world)[:3, :3].float()  # mm -> normalized source units
        coarse = torch.einsum("ab,nbxyz->naxyz", lin, coarse)[:, perm]
        disp = F.interpolate(coarse, size=tuple(shape), mode="trilinear", align_corners=True)
        grid = grid + disp.permute(0, 2, 3, 4, 1)
    out = F.grid_sample(data["src"], grid, mode="bilinear", padding_mode="zeros", align_corners=True)[0]
    return out, out_aff


def labels_from(gm, wm):
    bg = (1 - gm - wm).clamp(0, 1)
    return torch.stack([bg, gm, wm]).argmax(0)


def smooth_field(g, shape, coarse, sd):
    c = N(g, (1, 1, coarse, coarse, coarse)).float() * sd
    return F.interpolate(c, size=shape, mode="trilinear", align_corners=True)[0, 0]


def gaussian_blur(x, sigmas):
    """Separable Gaussian blur of a 3-D tensor, sigma per axis in voxels (0 = none)."""
    y = x[None, None]
    for ax, s in enumerate(sigmas):
        s = float(s)
        if s < 0.1:
            continue
        r = max(1, int(math.ceil(3 * s)))
        t = torch.arange(-r, r + 1, dtype=torch.float32)
        k = torch.exp(-0.5 * (t / s) ** 2)
        k = k / k.sum()
        shape = [1, 1, 1, 1, 1]
        shape[2 + ax] = 2 * r + 1
        pad = [0, 0, 0, 0, 0, 0]
        pad[2 * (2 - ax)] = r
        pad[2 * (2 - ax) + 1] = r
        y = F.conv3d(F.pad(y, pad, mode="replicate"), k.reshape(shape))
    return y[0, 0]


def low_resolution(x, g):
    """Downsample along one random axis to a 1-3x coarser spacing (2-6 mm on the 2 mm grid) and back."""
    ax = int(torch.randint(0, 3, (1,), generator=g))
    f = float(U(g, 1.0, 3.0))
    size = list(x.shape)
    size[ax] = max(4, int(round(size[ax] / f)))
    lo = F.interpolate(x[None, None], size=size, mode="area")
    return F.interpolate(lo, size=tuple(x.shape), mode="trilinear", align_corners=False)[0, 0]


def noise_like(x, g):
    return torch.randn(x.shape, generator=g, dtype=torch.float32)


def synth_contrast(maps, g):
    """SynthSeg-style image from the warped soft maps [4, ...] (t1 unused): four soft classes
    (outside = 1 - brain, csf-like = brain - gm - wm, gm, wm), random mean and sd per class,
    partial volume by mixing with the soft maps, blur, bias, gamma, noise, low resolution."""
    _, gm, wm, brain = maps
    out = (1 - brain).clamp(0, 1)
    csf = (brain - gm - wm).clamp(0, 1)
    probs = torch.stack([out, csf, gm, wm])
    means = U(g, 0.0, 1.0, (4,)).float()
    if float(U(g, 0, 1)) < 0.5:  # skull-stripped-like: dark outside
        means[0] = float(U(g, 0.0, 0.1))
    sds = U(g, 0.0, 0.08, (4,)).float()
    img = (probs * means[:, None, None, None]).sum(0)
    img = img + (probs * sds[:, None, None, None]).sum(0) * noise_like(img, g)
    img = gaussian_blur(img, U(g, 0, 1.0, (3,)))
    img = img.clamp(min=0)
    img = img * torch.exp(smooth_field(g, img.shape, 4, float(U(g, 0, 0.4))))
    img = img / img.max().clamp(min=1e-6)
    img = img ** float(torch.exp(N(g) * 0.3))
    if float(U(g, 0, 1)) < 0.5:
        img = low_resolution(img, g)
    sd = float(U(g, 0, 0.06))
    if float(U(g, 0, 1)) < 0.5:
        img = img + sd * noise_like(img, g)
    else:
        img = torch.sqrt((img + sd * noise_like(img, g)) ** 2 + (sd * noise_like(img, g)) ** 2)
    return img


def real_contrast(maps, g):
    """The warped real T1 with ordinary augmentation: scale/shift, gamma, mild bias, mild noise, mild blur."""
    img = maps[0].clamp(min=0)
    img = img * torch.exp(smooth_field(g, img.shape, 4, float(U(g, 0, 0.25))))
    img = img / img.max().clamp(min=1e-6)
    img = img ** float(torch.exp(N(g) * 0.15))
    if float(U(g, 0, 1)) < 0.3:
        img = gaussian_blur(img, U(g, 0, 0.8, (3,)))
    if float(U(g, 0, 1)) < 0.2:
        img = low_resolution(img, g)
    sd = float(U(g, 0, 0.04))
    if float(U(g, 0, 1)) < 0.5:
        img = img + sd * noise_like(img, g)
    else:
        img = torch.sqrt((img + sd * noise_like(img, g)) ** 2 + (sd * noise_like(img, g)) ** 2)
    return img * float(U(g, 0.5, 2.0)) + float(U(g, -0.05, 0.05))


def otsu_threshold(x, nbins=256):
    """skimage.filters.threshold_otsu on a float tensor (256-bin histogram, bin centres)."""
    lo, hi = float(x.min()), float(x.max())
    if hi <= lo:
        return lo
    hist = torch.histc(x.double(), bins=nbins, min=lo, max=hi)
    edges = torch.linspace(lo, hi, nbins + 1, dtype=torch.float64)
    centers = (edges[:-1] + edges[1:]) / 2
    w1 = torch.cumsum(hist, 0)
    w2 = torch.flip(torch.cumsum(torch.flip(hist, [0]), 0), [0])
    m1 = torch.cumsum(hist * centers, 0) / w1.clamp(min=1e-12)
    m2 = torch.flip(torch.cumsum(torch.flip(hist * centers, [0]), 0) / torch.flip(w2, [0]).clamp(min=1e-12), [0])
    var = w1[:-1] * w2[1:] * (m1[:-1] - m2[1:]) ** 2
    return float(centers[int(torch.argmax(var))])


def foreground_mask(x):
    """Approximation of the engine's mask (Otsu, largest 6-connected component, holes filled):
    Otsu foreground, then holes filled as the voxels enclosed along all three axes (between the
    first and last foreground voxel of their row in i, j and k). The largest-component step is
    skipped. See training/README.md."""
    fg = x > otsu_threshold(x)
    inside = fg.clone()
    enclosed = torch.ones_like(fg)
    for ax in range(3):
        f = fg.to(torch.int8)
        fwd = torch.cummax(f, dim=ax).values
        bwd = torch.flip(torch.cummax(torch.flip(f, [ax]), dim=ax).values, [ax])
        enclosed &= (fwd > 0) & (bwd > 0)
    return inside | enclosed


def harmonize(x, lower=0.5, upper=99.5):
    """The contract's percentile harmonization: clip((x - p_l) / (p_u - p_l), 0, 1), numpy-'linear'
    percentiles over the foreground mask, applied to every voxel."""
    m = foreground_mask(x)
    vals = x[m].double()
    if vals.numel() > 16_000_000:
        vals = vals[:: int(math.ceil(vals.numel() / 16_000_000))]
    q = torch.quantile(vals, torch.tensor([lower / 100, upper / 100], dtype=torch.float64))
    pl, pu = float(q[0]), float(q[1])
    return ((x - pl) / max(pu - pl, 1e-12)).clamp(0, 1).float()


def synth_volume(data, g, shape=(96, 112, 96), spacing=2.0, p_synth=0.5):
    """One harmonized training volume and its labels on a random 2 mm grid."""
    maps, _ = warp(data, g, shape, spacing)
    lab = labels_from(maps[1], maps[2])
    img = synth_contrast(maps, g) if float(U(g, 0, 1)) < p_synth else real_contrast(maps, g)
    return harmonize(img), lab


def random_crop(img, lab, g, size=64, p_brain=0.9):
    shape = img.shape
    if float(U(g, 0, 1)) < p_brain:
        idx = torch.nonzero(lab > 0)
        c = idx[int(torch.randint(0, idx.shape[0], (1,), generator=g))]
    else:
        c = torch.tensor([int(torch.randint(0, n, (1,), generator=g)) for n in shape])
    start = [int(min(max(int(ci) - size // 2, 0), n - size)) for ci, n in zip(c, shape)]
    sl = tuple(slice(s, s + size) for s in start)
    return img[sl], lab[sl]
