"""The worked example of COUNTING.md: Conv2d 3->2 (k7, s2, p3), BatchNorm2d, ReLU.

    modelprof stats examples/worked.py:Net --shape 3,500,500
"""

from torch import nn


class Net(nn.Module):
    """conv1 -> bn1 -> relu1, the single-input network every build must count exactly."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 2, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(2)
        self.relu1 = nn.ReLU()

    def forward(self, x):
        return self.relu1(self.bn1(self.conv1(x)))
