"""(negative, looks like a CNN) kuangliu/pytorch-cifar `ResNet` with BasicBlocks -- same key layout
(conv1, bn1, layer{1-4}.{j}.{conv1,bn1,conv2,bn2,shortcut.0,shortcut.1}, linear), scaled down: widths
8/16/32/64 instead of 64/128/256/512, one block per stage, 1 input channel (upstream hard-codes 3).
"""
from torch import nn
import torch.nn.functional as F

from tests.implementations.common import make_expected

SOURCE = 'kuangliu/pytorch-cifar@49b7aa97b0c12fe0d4054e670403a16b6b834ddd:models/resnet.py'
WIDTHS, BLOCKS = (8, 16, 32, 64), (1, 1, 1, 1)
HEAD = ['linear.']
TRAIN = dict(lr=3e-3)

NOTES = """
* Keys: `conv1.weight` (no bias), `bn1.{weight,bias,running_mean,running_var,num_batches_tracked}`,
  `layer{s}.{j}.{conv1,bn1,conv2,bn2}`, `layer{s}.{j}.shortcut.{0: Conv1x1, 1: BN}` when the shape changes,
  `linear`. Buffers: every BN's running_mean / running_var (statistics) and num_batches_tracked (int64 counter).
* Forward: relu(bn1(conv1)) -> 4 stages (strides 1,2,2,2) -> avg_pool2d(4) (needs 32x32 input) -> linear.
"""


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Sequential(nn.Conv2d(in_planes, planes, 1, stride, bias=False), nn.BatchNorm2d(planes))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNet(nn.Module):
    def __init__(self, num_classes, in_chans):
        super().__init__()
        self.in_planes = WIDTHS[0]
        self.conv1 = nn.Conv2d(in_chans, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        self.layer1 = self._make_layer(WIDTHS[0], BLOCKS[0], 1)
        self.layer2 = self._make_layer(WIDTHS[1], BLOCKS[1], 2)
        self.layer3 = self._make_layer(WIDTHS[2], BLOCKS[2], 2)
        self.layer4 = self._make_layer(WIDTHS[3], BLOCKS[3], 2)
        self.linear = nn.Linear(WIDTHS[3], num_classes)

    def _make_layer(self, planes, n, stride):
        layers = []
        for s in [stride] + [1] * (n - 1):
            layers.append(BasicBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer4(self.layer3(self.layer2(self.layer1(out))))
        return self.linear(F.avg_pool2d(out, 4).flatten(1))


def expected(num_classes=10, img_size=32, in_chans=1):
    bufs = {}
    for name in ['bn1'] + [f'layer{s}.0.{b}' for s in range(1, 5) for b in ('bn1', 'bn2')] + \
            [f'layer{s}.0.shortcut.1' for s in range(2, 5)]:
        bufs.update({f'{name}.running_mean': 'running_stat', f'{name}.running_var': 'running_stat',
                     f'{name}.num_batches_tracked': 'counter'})
    # kinds outside the sincos|mask|constant|lookup vocabulary on purpose: BN statistics change during
    # training (without gradients) and num_batches_tracked counts steps -- neither is a constant
    return make_expected(SOURCE, img_size=img_size, in_chans=in_chans, num_classes=num_classes, is_vit=False,
                         looks_like='cnn', buffers=bufs, depth=None)


EXPECTED = expected()


def build(num_classes=10, img_size=32, in_chans=1):
    return ResNet(num_classes, in_chans)
