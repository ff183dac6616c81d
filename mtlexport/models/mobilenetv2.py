"""MobileNetV2 with DeepLab-style output stride (later strides become dilations).

Reads top to bottom: the inverted residual block, the backbone, the registered factory.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtlexport.models.registry import BACKBONES
from mtlexport.models.spec import BackboneSpec

# (expansion t, channels c, repeats n, stride s) from the MobileNetV2 paper, Table 2.
_SETTINGS = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round to the nearest multiple of ``divisor`` without going below 90% of ``value``."""
    new = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new < 0.9 * value:
        new += divisor
    return new


def conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, dilation: int = 1, groups: int = 1) -> nn.Sequential:
    """Convolution, batch norm, ReLU6."""
    padding = (kernel - 1) // 2 * dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=padding, dilation=dilation, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """1x1 expand, 3x3 depthwise (strided or dilated), 1x1 linear projection; residual when shapes match."""

    def __init__(self, cin: int, cout: int, stride: int, expand_ratio: int, dilation: int = 1) -> None:
        super().__init__()
        hidden = round(cin * expand_ratio)
        self.use_residual = stride == 1 and cin == cout
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(conv_bn_relu6(cin, hidden, kernel=1))
        layers += [
            conv_bn_relu6(hidden, hidden, stride=stride, dilation=dilation, groups=hidden),
            nn.Conv2d(hidden, cout, 1, bias=False),
            nn.BatchNorm2d(cout),
        ]
        self.conv = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(x)
        return x + out if self.use_residual else out


class MobileNetV2(nn.Module):
    """MobileNetV2 feature extractor ending with the 1x1 conv to 1280 x width_mult channels."""

    def __init__(self, spec: BackboneSpec, in_channels: int = 3) -> None:
        super().__init__()
        mult = spec.width_mult
        cin = make_divisible(32 * mult)
        last = make_divisible(1280 * max(1.0, mult))
        blocks: list[nn.Module] = [conv_bn_relu6(in_channels, cin, stride=2)]
        current_stride, dilation = 2, 1
        for t, c, n, s in _SETTINGS:
            cout = make_divisible(c * mult)
            for i in range(n):
                stride = s if i == 0 else 1
                block_dilation = dilation
                if stride == 2 and current_stride >= spec.output_stride:
                    # Past the output stride: keep resolution and dilate from the next block on.
                    stride, dilation = 1, dilation * 2
                elif stride == 2:
                    current_stride *= 2
                blocks.append(InvertedResidual(cin, cout, stride, t, block_dilation))
                cin = cout
        blocks.append(conv_bn_relu6(cin, last, kernel=1))
        self.features = nn.Sequential(*blocks)
        self.out_channels = last
        self.output_stride = spec.output_stride
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.features(x)


@BACKBONES.register("mobilenetv2")
def mobilenetv2(spec: BackboneSpec, in_channels: int = 3) -> MobileNetV2:
    """MobileNetV2 (width from ``width_mult``; ``base_width`` and ``deep_stem`` do not apply)."""
    return MobileNetV2(spec, in_channels)
