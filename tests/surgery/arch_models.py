"""Small multi-task models of the architectures users bring, each with dead channels in every block.

Dense block (features concatenated again and again), two branches concatenated in both orders,
channel shuffle (view / transpose / view), ConvNeXt-style blocks (Linear layers on channels-last
tensors) and a U-Net with skip concatenations. ``kill_channels`` zeroes random consumer input
slices, the way the proximal optimizer leaves them; ``DEAD`` lists, per model, channels killed
by hand in every block (each entry: every reader of one channel and the input index it reads it
at), ``BLOCKED`` dead channels the surgeon must keep and the layer / op type it must name, and
``LIVE`` slices zeroed in some readers only (or in a group the graph cannot map): kept.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def cbr(cin: int, cout: int, k: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, k, padding=k // 2, groups=groups, bias=False),
                         nn.BatchNorm2d(cout), nn.ReLU())


class Heads(nn.Module):
    """A segmentation head and a classification head, both ending in a protected ``classifier``."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.seg = nn.Sequential(cbr(c, 8, 3), nn.Conv2d(8, 4, 1))
        self.cls_hidden = nn.Linear(c, 12)
        self.classifier = nn.Linear(12, 3)

    def forward(self, x: Tensor, size: tuple[int, int]) -> dict[str, Tensor]:
        seg = F.interpolate(self.seg(x), size=size, mode="bilinear", align_corners=False)
        cls = self.classifier(torch.relu(self.cls_hidden(x.mean(dim=(2, 3)))))
        return {"seg": seg, "cls": cls}


class DenseLayer(nn.Module):
    """BN-ReLU-1x1 conv-BN-ReLU-3x3 conv over the concatenation of every earlier feature map."""

    def __init__(self, cin: int, growth: int) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, 2 * growth, 1, bias=False)
        self.norm2 = nn.BatchNorm2d(2 * growth)
        self.conv2 = nn.Conv2d(2 * growth, growth, 3, padding=1, bias=False)

    def forward(self, features: list[Tensor]) -> Tensor:
        x = torch.cat(features, 1)
        return self.conv2(torch.relu(self.norm2(self.conv1(torch.relu(self.norm1(x))))))


class DenseBlock(nn.ModuleList):
    def __init__(self, cin: int, growth: int, layers: int) -> None:
        super().__init__(DenseLayer(cin + i * growth, growth) for i in range(layers))

    def forward(self, x: Tensor) -> Tensor:
        features = [x]
        for layer in self:
            features.append(layer(features))
        return torch.cat(features, 1)


class DenseNet(nn.Module):
    """Two DenseNet blocks (every layer reads a fresh concatenation of all earlier features)."""

    def __init__(self, growth: int = 6, layers: int = 3) -> None:
        super().__init__()
        self.stem = cbr(3, 8, 3)
        self.block1 = DenseBlock(8, growth, layers)
        c = 8 + layers * growth
        self.transition = nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.Conv2d(c, 12, 1, bias=False),
                                        nn.AvgPool2d(2))
        self.block2 = DenseBlock(12, growth, layers)
        self.final = nn.Sequential(nn.BatchNorm2d(12 + layers * growth), nn.ReLU())
        self.heads = Heads(12 + layers * growth)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        x = self.block2(self.transition(self.block1(self.stem(x))))
        return self.heads(self.final(x), size)


class CrossCat(nn.Module):
    """Two branches concatenated in both orders, each concatenation read by its own layer."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 8, 3)
        self.left = cbr(8, 6, 3)
        self.right = cbr(8, 10, 1)
        self.ab = cbr(16, 12, 1)
        self.ba = cbr(16, 12, 3)
        self.heads = Heads(12)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        x = self.stem(x)
        a, b = self.left(x), self.right(x)
        x = self.ab(torch.cat([a, b], dim=1)) + self.ba(torch.cat([b, a], dim=1))
        return self.heads(x, size)


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    n, c, h, w = x.size()
    x = x.view(n, groups, c // groups, h, w)
    return torch.transpose(x, 1, 2).contiguous().view(n, c, h, w)


class ShuffleUnit(nn.Module):
    """ShuffleNet V2 unit: stride 2 runs two branches on the input, stride 1 splits it in half;
    the branches are concatenated and the channels shuffled."""

    def __init__(self, cin: int, cout: int, stride: int) -> None:
        super().__init__()
        half = cout // 2
        self.stride = stride
        if stride > 1:
            self.branch1 = nn.Sequential(
                nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin),
                nn.Conv2d(cin, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())
        src = cin if stride > 1 else half
        self.branch2 = nn.Sequential(
            nn.Conv2d(src, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU(),
            nn.Conv2d(half, half, 3, stride, 1, groups=half, bias=False), nn.BatchNorm2d(half),
            nn.Conv2d(half, half, 1, bias=False), nn.BatchNorm2d(half), nn.ReLU())

    def forward(self, x: Tensor) -> Tensor:
        if self.stride == 1:
            a, b = x.chunk(2, dim=1)
            out = torch.cat((a, self.branch2(b)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        return channel_shuffle(out, 2)


class ShuffleNet(nn.Module):
    """ShuffleNet V2 style: stem, max pool, a stage of shuffle units, a 1x1 conv, the heads."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = cbr(3, 12, 3)
        self.stage = nn.Sequential(ShuffleUnit(12, 16, 2), ShuffleUnit(16, 16, 1), ShuffleUnit(16, 16, 1))
        self.conv5 = cbr(16, 24, 1)
        self.heads = Heads(24)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        x = self.conv5(self.stage(F.max_pool2d(self.stem(x), 2)))
        return self.heads(x, size)


class ConvNeXtBlock(nn.Module):
    """Depthwise 7x7, permute, LayerNorm, Linear (4x), GELU, Linear, permute, layer scale, residual."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(c, c, 7, padding=3, groups=c)
        self.norm = nn.LayerNorm(c)
        self.pwconv1 = nn.Linear(c, 4 * c)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * c, c)
        self.gamma = nn.Parameter(torch.full((c,), 0.5))

    def forward(self, x: Tensor) -> Tensor:
        y = self.dwconv(x).permute(0, 2, 3, 1)
        y = self.pwconv2(self.act(self.pwconv1(self.norm(y))))
        return x + (self.gamma * y).permute(0, 3, 1, 2)


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of an NCHW tensor (ConvNeXt downsampling layers)."""

    def forward(self, x: Tensor) -> Tensor:
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXt(nn.Module):
    """Patchify stem, two stages of ConvNeXt blocks with a LayerNorm + strided conv downsample."""

    def __init__(self, dims: tuple[int, int] = (8, 16)) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 2, stride=2), LayerNorm2d(dims[0]))
        self.stage1 = nn.Sequential(ConvNeXtBlock(dims[0]), ConvNeXtBlock(dims[0]))
        self.down = nn.Sequential(LayerNorm2d(dims[0]), nn.Conv2d(dims[0], dims[1], 2, stride=2))
        self.stage2 = nn.Sequential(ConvNeXtBlock(dims[1]), ConvNeXtBlock(dims[1]))
        self.heads = Heads(dims[1])

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        x = self.stage2(self.down(self.stage1(self.stem(x))))
        return self.heads(x, size)


class UNet(nn.Module):
    """Encoder-decoder with skip concatenations (upsampled decoder features first, skip second)."""

    def __init__(self) -> None:
        super().__init__()
        self.enc1 = nn.Sequential(cbr(3, 8, 3), cbr(8, 8, 3))
        self.enc2 = nn.Sequential(cbr(8, 16, 3), cbr(16, 16, 3))
        self.enc3 = nn.Sequential(cbr(16, 24, 3), cbr(24, 24, 3))
        self.up2 = nn.ConvTranspose2d(24, 16, 2, stride=2)
        self.dec2 = nn.Sequential(cbr(32, 16, 3), cbr(16, 16, 3))
        self.up1 = nn.Upsample(scale_factor=2, mode="nearest")
        self.dec1 = nn.Sequential(cbr(24, 8, 3), cbr(8, 8, 3))
        self.heads = Heads(8)

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        size = x.shape[-2:]
        e1 = self.enc1(x)
        e2 = self.enc2(F.max_pool2d(e1, 2))
        e3 = self.enc3(F.max_pool2d(e2, 2))
        d2 = self.dec2(torch.cat([self.up2(e3), e2], dim=1))
        d1 = self.dec1(torch.cat([self.up1(d2), e1], dim=1))
        return self.heads(d1, size)


ARCHITECTURES = {"dense": DenseNet, "crosscat": CrossCat, "shuffle": ShuffleNet, "convnext": ConvNeXt, "unet": UNet}


def randomise(model: nn.Module, gen: torch.Generator) -> None:
    """Non-trivial norm statistics, affine parameters and biases."""
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, nn.BatchNorm2d):
                n = mod.num_features
                mod.running_mean.copy_(torch.randn(n, generator=gen) * 0.1)
                mod.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                mod.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                mod.bias.copy_(torch.randn(n, generator=gen) * 0.5)
            elif isinstance(mod, nn.LayerNorm):
                mod.weight.copy_(torch.rand(mod.weight.shape, generator=gen) + 0.5)
                mod.bias.copy_(torch.randn(mod.bias.shape, generator=gen) * 0.5)


def kill_channels(model: nn.Module, gen: torch.Generator, share: float = 0.4) -> dict[str, list[int]]:
    """Zero a random ``share`` (at least one) of the input slices of every plain conv / linear
    layer that reads more than 3 channels, output layers excepted. Returns the zeroed indices."""
    zeroed: dict[str, list[int]] = {}
    with torch.no_grad():
        for name, mod in model.named_modules():
            if name.endswith("classifier"):
                continue
            if isinstance(mod, nn.Conv2d) and mod.groups == 1 and mod.in_channels > 3:
                n, dim = mod.in_channels, 1
            elif isinstance(mod, nn.ConvTranspose2d):
                n, dim = mod.in_channels, 0
            elif isinstance(mod, nn.Linear):
                n, dim = mod.in_features, 1
            else:
                continue
            idx = torch.randperm(n, generator=gen)[:max(1, int(share * n))].sort().values
            mod.weight.index_fill_(dim, idx, 0.0)
            zeroed[name] = idx.tolist()
    return zeroed


Readers = dict[str, int]

HEAD_HIDDEN: list[Readers] = [{"heads.seg.1": 2}, {"heads.classifier": 4}]

DEAD: dict[str, list[Readers]] = {
    "dense": [
        {"block1.0.conv1": 1, "block1.1.conv1": 1, "block1.2.conv1": 1, "transition.2": 1},  # stem
        {"block1.1.conv1": 10, "block1.2.conv1": 10, "transition.2": 10},  # block1.0 output, offset 8
        {"block1.2.conv1": 18, "transition.2": 18},  # block1.1 output, offset 14
        {"transition.2": 25},  # block1.2 output, offset 20
        {"block1.1.conv2": 3}, {"block2.0.conv2": 7},  # bottleneck widths
        {"block2.0.conv1": 5, "block2.1.conv1": 5, "block2.2.conv1": 5, "heads.seg.0.0": 5,
         "heads.cls_hidden": 5},  # transition output
        {"block2.2.conv1": 18, "heads.seg.0.0": 18, "heads.cls_hidden": 18},  # block2.1 output
        {"heads.seg.0.0": 29, "heads.cls_hidden": 29},  # block2.2 output
        *HEAD_HIDDEN,
    ],
    "crosscat": [
        {"left.0": 0, "right.0": 0},  # stem
        {"ab.0": 1, "ba.0": 11}, {"ab.0": 4, "ba.0": 14},  # left: first in ab, second in ba
        {"ab.0": 8, "ba.0": 2}, {"ab.0": 15, "ba.0": 9},  # right: second in ab, first in ba
        {"heads.seg.0.0": 3, "heads.cls_hidden": 3},  # ab + ba
        *HEAD_HIDDEN,
    ],
    "shuffle": [
        {"stage.0.branch1.2": 5, "stage.0.branch2.0": 5},  # stem (through a depthwise conv)
        {"stage.0.branch2.5": 3}, {"stage.1.branch2.5": 1}, {"stage.2.branch2.5": 6},  # unit widths
        {"heads.seg.0.0": 7, "heads.cls_hidden": 7},  # conv5
        *HEAD_HIDDEN,
    ],
    "convnext": [
        {"stage1.0.pwconv2": 5}, {"stage1.0.pwconv2": 30}, {"stage1.1.pwconv2": 0},  # MLP widths
        {"stage2.0.pwconv2": 17}, {"stage2.1.pwconv2": 63},
        *HEAD_HIDDEN,
    ],
    "unet": [
        {"enc2.0.0": 2, "dec1.0.0": 18},  # e1: pooled into enc2 and the second part of dec1's concat
        {"enc3.0.0": 7, "dec2.0.0": 23},  # e2: pooled into enc3 and the second part of dec2's concat
        {"enc1.1.0": 5}, {"enc2.1.0": 9}, {"enc3.1.0": 11}, {"dec2.1.0": 6}, {"dec1.1.0": 3},
        {"dec1.0.0": 10},  # d2, upsampled, first part of dec1's concat
        {"heads.seg.0.0": 1, "heads.cls_hidden": 1},  # d1
        *HEAD_HIDDEN,
    ],
}

BLOCKED: dict[str, tuple[list[Readers], set[str]]] = {
    "dense": ([], set()),
    "crosscat": ([], set()),
    "shuffle": ([], {"ViewBackward0"}),
    # stage-2 stream: every reader is zero, but the LayerNorms normalise over the channel
    "convnext": ([{"stage2.0.pwconv1": 3, "stage2.1.pwconv1": 3, "heads.seg.0.0": 3, "heads.cls_hidden": 3}],
                 {"LayerNorm", "LayerNorm2d"}),
    # a transposed convolution reads e3 and writes the first part of dec2's concat
    "unet": ([{"up2": 3}, {"dec2.0.0": 4}], {"ConvTranspose2d"}),
}

LIVE: dict[str, list[Readers]] = {
    "dense": [{"block1.1.conv1": 12, "block1.2.conv1": 12}],  # transition.2 still reads it
    "crosscat": [{"ab.0": 2}],  # ba still reads left channel 2
    "shuffle": [{"conv5.0": 4}, {"stage.1.branch2.0": 2}],  # behind the shuffle
    "convnext": [{"stage1.0.pwconv1": 2}],  # the residual stream channel is read elsewhere
    "unet": [{"enc3.0.0": 1}],  # dec2 still reads e2 channel 1
}


def zero_readers(model: nn.Module, specs: list[Readers]) -> None:
    """Zero each listed reader's input slice (``ConvTranspose2d``: its weight's first dim)."""
    with torch.no_grad():
        for readers in specs:
            for name, idx in readers.items():
                mod = model.get_submodule(name)
                if isinstance(mod, nn.ConvTranspose2d):
                    mod.weight[idx] = 0
                else:
                    mod.weight[:, idx] = 0


def build_dead(kind: str, seed: int = 0) -> nn.Module:
    """An ``ARCHITECTURES[kind]`` model with the ``DEAD``, ``BLOCKED`` and ``LIVE`` slices zeroed."""
    torch.manual_seed(seed)
    model = ARCHITECTURES[kind]().eval()
    randomise(model, torch.Generator().manual_seed(seed))
    zero_readers(model, DEAD[kind] + BLOCKED[kind][0] + LIVE[kind])
    return model


def build(kind: str, seed: int = 0, share: float = 0.4) -> tuple[nn.Module, dict[str, list[int]]]:
    """An ``ARCHITECTURES[kind]`` model in eval mode with random norms and dead input slices."""
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = ARCHITECTURES[kind]().eval()
    randomise(model, gen)
    return model, kill_channels(model, gen, share)
