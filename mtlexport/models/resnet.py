"""ResNet-18/34/50 with DeepLab-style output stride (dilated last stages) and optional deep stem.

Reads top to bottom: blocks, the backbone class, the factory, registered entry points.
The backbone returns only its last feature map; ``out_channels`` gives its width.
"""

from __future__ import annotations

from torch import Tensor, nn

from mtlexport.models.registry import BACKBONES
from mtlexport.models.spec import BackboneSpec


def conv3x3(cin: int, cout: int, stride: int = 1, dilation: int = 1) -> nn.Conv2d:
    """3x3 convolution without bias, padded to keep the size (at stride 1)."""
    return nn.Conv2d(cin, cout, 3, stride=stride, padding=dilation, dilation=dilation, bias=False)


def conv1x1(cin: int, cout: int, stride: int = 1) -> nn.Conv2d:
    """1x1 convolution without bias."""
    return nn.Conv2d(cin, cout, 1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with a residual connection (ResNet-18/34)."""

    expansion = 1

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv3x3(cin, planes, stride, first_dilation)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, 1, dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 reduce, 3x3 (strided / dilated), 1x1 expand, with a residual connection (ResNet-50)."""

    expansion = 4

    def __init__(self, cin: int, planes: int, stride: int = 1, dilation: int = 1,
                 first_dilation: int = 1, downsample: nn.Module | None = None) -> None:
        super().__init__()
        self.conv1 = conv1x1(cin, planes)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride, first_dilation)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


class ResNet(nn.Module):
    """ResNet feature extractor; stages 3-4 trade stride for dilation to reach ``output_stride``."""

    def __init__(self, block: type[BasicBlock] | type[Bottleneck], layers: tuple[int, int, int, int],
                 spec: BackboneSpec, in_channels: int = 3) -> None:
        super().__init__()
        base = max(1, round(spec.base_width * spec.width_mult))
        if spec.deep_stem:
            stem_width = base
            self.stem = nn.Sequential(
                conv3x3(in_channels, stem_width, stride=2), nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True),
                conv3x3(stem_width, stem_width), nn.BatchNorm2d(stem_width), nn.ReLU(inplace=True),
                conv3x3(stem_width, stem_width * 2), nn.BatchNorm2d(stem_width * 2), nn.ReLU(inplace=True),
            )
            self.inplanes = stem_width * 2
        else:
            self.stem = nn.Sequential(
                nn.Conv2d(in_channels, base, 7, stride=2, padding=3, bias=False),
                nn.BatchNorm2d(base), nn.ReLU(inplace=True),
            )
            self.inplanes = base
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        # Stages 3 and 4 are dilated instead of strided when the output stride asks for it.
        dilate3 = spec.output_stride == 8
        dilate4 = spec.output_stride in (8, 16)
        self.dilation = 1
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2, dilate=dilate3)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2, dilate=dilate4)
        self.out_channels = base * 8 * block.expansion
        self.output_stride = spec.output_stride
        _init_weights(self)

    def _make_layer(self, block: type[BasicBlock] | type[Bottleneck], planes: int, blocks: int,
                    stride: int = 1, dilate: bool = False) -> nn.Sequential:
        previous_dilation = self.dilation
        if dilate:
            self.dilation *= stride
            stride = 1
        downsample = None
        if stride != 1 or self.inplanes != planes * block.expansion:
            downsample = nn.Sequential(
                conv1x1(self.inplanes, planes * block.expansion, stride),
                nn.BatchNorm2d(planes * block.expansion),
            )
        layers = [block(self.inplanes, planes, stride, self.dilation, previous_dilation, downsample)]
        self.inplanes = planes * block.expansion
        layers += [block(self.inplanes, planes, 1, self.dilation, self.dilation) for _ in range(1, blocks)]
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.maxpool(self.stem(x))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)


def _init_weights(module: nn.Module) -> None:
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


@BACKBONES.register("resnet18")
def resnet18(spec: BackboneSpec, in_channels: int = 3) -> ResNet:
    """ResNet-18 (BasicBlock, 2-2-2-2)."""
    return ResNet(BasicBlock, (2, 2, 2, 2), spec, in_channels)


@BACKBONES.register("resnet34")
def resnet34(spec: BackboneSpec, in_channels: int = 3) -> ResNet:
    """ResNet-34 (BasicBlock, 3-4-6-3)."""
    return ResNet(BasicBlock, (3, 4, 6, 3), spec, in_channels)


@BACKBONES.register("resnet50")
def resnet50(spec: BackboneSpec, in_channels: int = 3) -> ResNet:
    """ResNet-50 (Bottleneck, 3-4-6-3); with output_stride 8 this is the paper's dilated ResNet-50."""
    return ResNet(Bottleneck, (3, 4, 6, 3), spec, in_channels)
