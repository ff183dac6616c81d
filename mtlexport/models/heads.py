"""Task heads: DeepLab-V3 ASPP for dense tasks, conv-pool-MLP for image-level tasks.

Every head ends in a layer named ``classifier`` (a Conv2d for dense heads, a Linear for the
classification head): the task output layer that surgery must never resize.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from mtlexport.models.registry import HEADS
from mtlexport.models.spec import HeadSpec

OUTPUT_LAYER = "classifier"


def conv_bn_relu(cin: int, cout: int, kernel: int = 1, dilation: int = 1) -> nn.Sequential:
    """Convolution (no bias), batch norm, ReLU; padded to keep the size."""
    padding = (kernel - 1) // 2 * dilation
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, padding=padding, dilation=dilation, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class ASPPPooling(nn.Module):
    """Image-level branch of ASPP: global average pool, 1x1 conv, broadcast back to the map size."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.conv = nn.Conv2d(cin, cout, 1, bias=False)
        # No batch norm on the 1x1 map: it breaks at batch 1 in training and adds nothing here.
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.conv(self.pool(x)))
        return y.expand(-1, -1, x.shape[-2], x.shape[-1])


class ASPP(nn.Module):
    """Atrous spatial pyramid pooling: 1x1, dilated 3x3 branches and image pooling, concatenated."""

    def __init__(self, cin: int, width: int, rates: tuple[int, ...], image_pooling: bool = True) -> None:
        super().__init__()
        branches: list[nn.Module] = [conv_bn_relu(cin, width, 1)]
        branches += [conv_bn_relu(cin, width, 3, dilation=r) for r in rates]
        if image_pooling:
            branches.append(ASPPPooling(cin, width))
        self.branches = nn.ModuleList(branches)
        self.project = conv_bn_relu(width * len(branches), width, 1)

    def forward(self, x: Tensor) -> Tensor:
        return self.project(torch.cat([b(x) for b in self.branches], dim=1))


class DenseHead(nn.Module):
    """DeepLab-V3 head: ASPP, 3x3 conv, 1x1 classifier at feature resolution, upsampled to the input."""

    def __init__(self, cin: int, num_outputs: int, spec: HeadSpec) -> None:
        super().__init__()
        self.aspp = ASPP(cin, spec.width, spec.rates, spec.image_pooling)
        self.conv = conv_bn_relu(spec.width, spec.width, 3)
        self.classifier = nn.Conv2d(spec.width, num_outputs, 1)

    def forward(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        y = self.classifier(self.conv(self.aspp(features)))
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)


class ClassificationHead(nn.Module):
    """Image-level head: 3x3 conv, global average pooling, two fully connected layers."""

    def __init__(self, cin: int, num_outputs: int, spec: HeadSpec) -> None:
        super().__init__()
        self.conv = conv_bn_relu(cin, spec.width, 3)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(spec.width, spec.hidden)
        self.relu = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(spec.hidden, num_outputs)

    def forward(self, features: Tensor, size: tuple[int, int]) -> Tensor:
        y = torch.flatten(self.pool(self.conv(features)), 1)
        return self.classifier(self.relu(self.fc(y)))


@HEADS.register("aspp")
def aspp_head(cin: int, num_outputs: int, spec: HeadSpec) -> DenseHead:
    """DeepLab-V3 ASPP head for per-pixel tasks."""
    return DenseHead(cin, num_outputs, spec)


@HEADS.register("classifier")
def classifier_head(cin: int, num_outputs: int, spec: HeadSpec) -> ClassificationHead:
    """Conv + pooling + two fully connected layers for image-level tasks."""
    return ClassificationHead(cin, num_outputs, spec)
