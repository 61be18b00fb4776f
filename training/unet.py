"""Small 3-D UNet and 3-D CNN classifier, plain torch, with dropout gated by an input.

`GatedDropout` keeps the random mask in the graph: y = x * (1 + gate * (mask - 1)) with a
channel-wise mask (one draw per sample and channel) scaled by 1/(1-p). gate = 0 gives x exactly
(deterministic inference, identical to torch eval); gate = 1 is ordinary channel dropout, a fresh
mask on every call (ONNX RandomUniformLike). Training runs with gate = 1; the exported graph takes
the gate as its `mc_dropout` input [1].
"""
import torch
import torch.nn as nn
import torch.nn.functional as F


class GatedDropout(nn.Module):
    def __init__(self, p: float):
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        keep = (torch.rand_like(x[:, :, :1, :1, :1]) >= self.p).to(x.dtype) / (1.0 - self.p)
        return x * (1.0 + gate.reshape(1, 1, 1, 1, 1) * (keep - 1.0))


def conv_block(cin: int, cout: int, norm: str = "instance") -> nn.Sequential:
    """Two 3x3x3 convolutions, each followed by the normalisation and LeakyReLU. norm = "none" keeps
    the layer indices (an Identity in the normalisation's place), so that the convolutions' names are
    those of an exported member whose normalisations were folded into them (training/freeze_norm.py)."""
    def normalisation():
        return nn.InstanceNorm3d(cout, affine=True) if norm == "instance" else nn.Identity()

    if norm not in ("instance", "none"):
        raise ValueError(f"norm {norm!r}: instance or none")
    return nn.Sequential(
        nn.Conv3d(cin, cout, 3, padding=1),
        normalisation(),
        nn.LeakyReLU(0.01),
        nn.Conv3d(cout, cout, 3, padding=1),
        normalisation(),
        nn.LeakyReLU(0.01),
    )


class UNet3D(nn.Module):
    """Encoder channels `ch` (e.g. 8-16-32-48), 3 poolings (input sides multiple of 8),
    transposed-conv upsampling, skip concatenation, softmax output over `classes`. norm "instance"
    normalises each feature map over the extent the network is given; "none" computes the same
    function at every extent (whole-grid passes, issue 16)."""

    def __init__(self, ch=(8, 16, 32, 48), classes: int = 3, p_drop: float = 0.15, norm: str = "instance"):
        super().__init__()
        self.enc = nn.ModuleList()
        cin = 1
        for c in ch:
            self.enc.append(conv_block(cin, c, norm))
            cin = c
        self.up = nn.ModuleList()
        self.dec = nn.ModuleList()
        for lo, hi in zip(reversed(ch[:-1]), reversed(ch[1:])):
            self.up.append(nn.ConvTranspose3d(hi, lo, 2, stride=2))
            self.dec.append(conv_block(2 * lo, lo, norm))
        self.head = nn.Conv3d(ch[0], classes, 1)
        # dropout after the two deepest encoder blocks and after every decoder block
        self.drop_enc = nn.ModuleList([GatedDropout(p_drop) for _ in ch])
        self.drop_dec = nn.ModuleList([GatedDropout(p_drop) for _ in self.dec])
        self.n_levels = len(ch)

    def logits(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        skips = []
        for i, (blk, dr) in enumerate(zip(self.enc, self.drop_enc)):
            if i > 0:
                x = F.max_pool3d(x, 2)
            x = blk(x)
            if i >= self.n_levels - 2:
                x = dr(x, gate)
            skips.append(x)
        x = skips.pop()
        for up, blk, dr in zip(self.up, self.dec, self.drop_dec):
            x = up(x)
            x = blk(torch.cat([x, skips.pop()], dim=1))
            x = dr(x, gate)
        return self.head(x)

    def forward(self, image: torch.Tensor, mc_dropout: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(image, mc_dropout), dim=1)


class QualityCNN(nn.Module):
    """4 conv stages (stride-2 pooling between), global average pooling, dropout, linear.
    forward returns softmax(logits / T) with T a buffer (1 until temperature scaling)."""

    def __init__(self, ch=(8, 16, 32, 32), classes: int = 2, p_drop: float = 0.3):
        super().__init__()
        layers, cin = [], 1
        for i, c in enumerate(ch):
            if i > 0:
                layers.append(nn.MaxPool3d(2))
            layers += [nn.Conv3d(cin, c, 3, padding=1), nn.InstanceNorm3d(c, affine=True), nn.LeakyReLU(0.01)]
            cin = c
        self.features = nn.Sequential(*layers)
        self.drop = GatedDropout(p_drop)
        self.fc = nn.Linear(cin, classes)
        self.register_buffer("temperature", torch.ones(1))

    def logits(self, x: torch.Tensor, gate: torch.Tensor) -> torch.Tensor:
        f = self.drop(self.features(x), gate)
        return self.fc(f.mean(dim=(2, 3, 4)))

    def forward(self, image: torch.Tensor, mc_dropout: torch.Tensor) -> torch.Tensor:
        return torch.softmax(self.logits(image, mc_dropout) / self.temperature, dim=1)


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())
