"""`py:` factories for the in-house checkpoints in ../shared/data/weights.

These checkpoints are not timm or torchvision models; this file is what a user
writes to use their own network with headstart:

    headstart fit DATA --model py:benchmarks/factories.py:mobilenet_v1_025 \
        --weights ../shared/data/weights/mobilenetv1_025_imagenet/model_best.pth.tar

The architectures are rebuilt from the descriptions in the SOURCE.txt files.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

IMAGENET = {"input_size": (3, 224, 224), "mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225), "crop_pct": 0.875}


def _conv_bn(i: int, o: int, s: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(i, o, 3, s, 1, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True))


def _conv_dw(i: int, o: int, s: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(i, i, 3, s, 1, groups=i, bias=False), nn.BatchNorm2d(i), nn.ReLU(inplace=True),
        nn.Conv2d(i, o, 1, 1, 0, bias=False), nn.BatchNorm2d(o), nn.ReLU(inplace=True),
    )


class MobileNetV1x025(nn.Module):
    """MobileNetV1, width 0.25, 224x224 ImageNet classifier (256 features)."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        self.stage1 = nn.Sequential(_conv_bn(3, 8, 2), _conv_dw(8, 16, 1), _conv_dw(16, 32, 2), _conv_dw(32, 32, 1),
                                    _conv_dw(32, 64, 2), _conv_dw(64, 64, 1))
        self.stage2 = nn.Sequential(_conv_dw(64, 128, 2), *[_conv_dw(128, 128, 1) for _ in range(5)])
        self.stage3 = nn.Sequential(_conv_dw(128, 256, 2), _conv_dw(256, 256, 1))
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(256, num_classes)
        self.pretrained_cfg = dict(IMAGENET)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avg(self.stage3(self.stage2(self.stage1(x))))
        return self.fc(x.flatten(1))


def mobilenet_v1_025() -> nn.Module:
    return MobileNetV1x025()


class _Shortcut(nn.Module):
    """Option-A shortcut of the CIFAR ResNet paper: subsample and zero-pad channels (no weights)."""

    def __init__(self, planes: int):
        super().__init__()
        self.pad = planes // 4

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, self.pad, self.pad))


class _Block(nn.Module):
    def __init__(self, i: int, o: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(i, o, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(o)
        self.conv2 = nn.Conv2d(o, o, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(o)
        self.shortcut = _Shortcut(o) if stride != 1 or i != o else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + self.shortcut(x))


class CifarResNet(nn.Module):
    """ResNet-(6n+2) for 32x32 CIFAR images, 16/32/64 channels (64 features)."""

    def __init__(self, n: int, num_classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = nn.Sequential(*[_Block(16, 16, 1) for _ in range(n)])
        self.layer2 = nn.Sequential(_Block(16, 32, 2), *[_Block(32, 32, 1) for _ in range(n - 1)])
        self.layer3 = nn.Sequential(_Block(32, 64, 2), *[_Block(64, 64, 1) for _ in range(n - 1)])
        self.linear = nn.Linear(64, num_classes)
        self.pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.4914, 0.4822, 0.4465),
                               "std": (0.2470, 0.2435, 0.2616), "crop_pct": 1.0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.linear(x)


def cifar_resnet20() -> nn.Module:
    return CifarResNet(3)


def cifar_resnet32() -> nn.Module:
    return CifarResNet(5)
