"""A user-style `py:` factory for tests: a tiny classifier network with a final Linear."""

from torch import nn


class TinyNet(nn.Module):
    def __init__(self, num_classes: int = 5):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU())
        self.blocks = nn.Sequential(nn.Sequential(nn.Conv2d(8, 16, 3, 2, 1), nn.ReLU()),
                                    nn.Sequential(nn.Conv2d(16, 16, 3, 1, 1), nn.ReLU()))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(16, num_classes)
        self.pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 1.0}

    def forward(self, x):
        return self.fc(self.pool(self.blocks(self.stem(x))).flatten(1))


def tiny():
    return TinyNet()


class TinyVitLike(nn.Module):
    """Patch embedding, tokens plus a learned position embedding in ``forward``, then blocks (a ViT's
    shape): with the patch embedding and the first block frozen, the frozen-layer cache cannot cut it."""

    def __init__(self, num_classes: int = 5):
        import torch

        super().__init__()
        self.patch = nn.Conv2d(3, 16, 8, 8)  # 32x32 -> 4x4 = 16 tokens of width 16
        self.pos = nn.Parameter(torch.zeros(1, 16, 16))
        self.blocks = nn.Sequential(nn.Sequential(nn.Linear(16, 16), nn.ReLU()), nn.Sequential(nn.Linear(16, 16), nn.ReLU()))
        self.fc = nn.Linear(16, num_classes)
        self.pretrained_cfg = {"input_size": (3, 32, 32), "mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25), "crop_pct": 1.0}

    def forward(self, x):
        tokens = self.patch(x).flatten(2).transpose(1, 2) + self.pos
        return self.fc(self.blocks(tokens).mean(1))


def tiny_vit_like():
    return TinyVitLike()
