"""ResNet-12, the few-shot backbone of the direct-sum paper (003_3b01b74d9ee629e7.txt, Sec. 3.1: "ResNet-12
[20, 24] ... produces d = 640-dimensional feature x").

The architecture is the one of MetaOptNet (Lee et al., 2019) and TADAM, which 003 cites: four residual
blocks of widths 64-160-320-640, each three 3×3 convolutions with BatchNorm and leaky ReLU (slope 0.1),
a 1×1 convolution + BatchNorm on the shortcut, a leaky ReLU after the sum and a 2×2 max-pool; global
average pooling gives the 640-d feature. On 84×84 mini-ImageNet images the last map is 5×5.

Departures: DropBlock (MetaOptNet's regulariser in the last two blocks, with a rate scheduled over
training) is omitted; ``drop_rate`` offers plain dropout after each block instead (0 by default). The
max-pool is skipped once a map is already 1×1, so the network also runs on 8×8 digits and 28×28 images
(on 84×84 nothing changes).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["ResNet12", "ResNet12Block"]


def _conv3x3(in_planes: int, out_planes: int) -> nn.Conv2d:
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=1, padding=1, bias=False)


class ResNet12Block(nn.Module):
    """conv-BN-lrelu ×2, conv-BN, + shortcut (1×1 conv-BN), lrelu, max-pool 2.

    ``[B, in_planes, H, W] → [B, planes, H/2, W/2]`` (floor; no pooling once the map is 1×1).
    """

    def __init__(self, in_planes: int, planes: int, negative_slope: float = 0.1, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.conv1, self.bn1 = _conv3x3(in_planes, planes), nn.BatchNorm2d(planes)
        self.conv2, self.bn2 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.conv3, self.bn3 = _conv3x3(planes, planes), nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, kernel_size=1, bias=False), nn.BatchNorm2d(planes))
        self.negative_slope = negative_slope
        self.drop_rate = drop_rate

    def forward(self, x: Tensor) -> Tensor:
        slope = self.negative_slope
        out = F.leaky_relu(self.bn1(self.conv1(x)), slope)
        out = F.leaky_relu(self.bn2(self.conv2(out)), slope)
        out = F.leaky_relu(self.bn3(self.conv3(out)) + self.shortcut(x), slope)
        if min(out.shape[-2:]) >= 2:  # a 1×1 map (tiny inputs) has nothing left to pool
            out = F.max_pool2d(out, 2)
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class ResNet12(nn.Module):
    """ResNet-12: images ``[B, C, H, W]`` → features ``[B, widths[-1]]`` (640 by default)."""

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (64, 160, 320, 640),
                 negative_slope: float = 0.1, drop_rate: float = 0.0) -> None:
        super().__init__()
        blocks, planes = [], in_channels
        for width in widths:
            blocks.append(ResNet12Block(planes, width, negative_slope, drop_rate))
            planes = width
        self.blocks = nn.Sequential(*blocks)
        self.feature_dim = planes
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, a=negative_slope, mode="fan_out", nonlinearity="leaky_relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, images: Tensor) -> Tensor:
        return self.blocks(images).mean(dim=(2, 3))
