"""Every model the tests use, in one place. The example models live in examples/ and are imported here."""

from pathlib import Path

import torch
import torch.nn.functional as F
from captioning import CaptionModel  # noqa: F401  (re-exported for the tests)
from decoder import Decoder  # noqa: F401
from resnet import resnet18, resnet50  # noqa: F401
from torch import nn
from transformer import TinyTransformer  # noqa: F401
from worked import Net as WorkedNet  # noqa: F401

from modelprof import DType, InputSpec

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
#: Target paths the tests run through the CLI.
WORKED = str(EXAMPLES / "worked.py") + ":Net"
CAPTION = str(EXAMPLES / "captioning.py") + ":CaptionModel"
RESNET18 = str(EXAMPLES / "resnet.py") + ":resnet18"

CAPTION_SPECS = (
    InputSpec((50, 2048)),
    InputSpec((50, 4)),
    InputSpec((49, 2048)),
    InputSpec((50, 49)),
    InputSpec((19,), DType.INT64, high=10000),
)
CAPTION_FLAGS = ["--input", "50,2048", "--input", "50,4", "--input", "49,2048", "--input", "50,49",
                 "--input", "19:int64:10000"]


class FunctionalOps(nn.Module):
    """No child module does any work: matmul, @, SDPA, interpolate and a residual add all run in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(8, 8))

    def forward(self, x):                        # x: (N, 4, 6, 8)
        y = torch.matmul(x, self.weight)         # (N, 4, 6, 8)
        scores = y @ y.transpose(-2, -1)         # (N, 4, 6, 6)
        att = F.scaled_dot_product_attention(y, y, y)          # (N, 4, 6, 8)
        up = F.interpolate(att, scale_factor=2, mode="nearest")  # (N, 4, 12, 16)
        return up + 1.0, scores


class KwargsModel(nn.Module):
    """Keyword-only inputs and an int64 tensor, to exercise --input NAME=."""

    def __init__(self, vocab: int = 50) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, 8)
        self.fc = nn.Linear(8, 2)

    def forward(self, tokens, *, mask=None):
        x = self.embed(tokens)
        if mask is not None:
            x = x * mask.unsqueeze(-1)
        return self.fc(x.mean(dim=1))


class Shared(nn.Module):
    """Two layers share one weight: the total counts it once."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(4, 4, bias=False)
        self.b = nn.Linear(4, 4, bias=False)
        self.b.weight = self.a.weight
        self.frozen = nn.Linear(4, 2)
        for p in self.frozen.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        return self.frozen(self.b(self.a(x)))


class NeedsArgs(nn.Module):
    """A constructor with a required argument."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.fc = nn.Linear(width, 1)

    def forward(self, x):
        return self.fc(x)


class Unsupported(nn.Module):
    """Runs an op with no cost formula (a matrix inverse)."""

    def forward(self, x):
        return torch.linalg.inv(x @ x.transpose(-2, -1) + torch.eye(x.shape[-1]))


class Recurrent(nn.Module):
    """LSTM then GRU then RNN."""

    def __init__(self) -> None:
        super().__init__()
        self.lstm = nn.LSTM(8, 16, num_layers=2, batch_first=True)
        self.gru = nn.GRU(16, 12, bidirectional=True, batch_first=True)
        self.rnn = nn.RNN(24, 6, batch_first=True, bias=False)

    def forward(self, x):
        return self.rnn(self.gru(self.lstm(x)[0])[0])[0]


def make_caption_inputs(batch: int):
    """An --inputs factory returning an (args, kwargs) pair."""
    args = tuple(spec.make(batch, "cpu") for spec in CAPTION_SPECS)
    return args, {}


def attention_flops(bh: int, length: int, source: int, e: int, ev: int) -> int:
    """Hand formula used by several tests: two products, the scale, the softmax (3S - 1 per row)."""
    return bh * length * source * (e + ev) + bh * length * source + bh * length * (3 * source - 1)




class Hungry(nn.Module):
    """Each sample makes a 16 MiB activation (4 Mi float32), so a small --memory-limit is reached at a small batch."""

    def forward(self, x):                     # x: (N, 1024)
        return x.repeat(1, 4096).sum(dim=1)   # (N, 4194304) floats = 16 MiB per sample


class HungryTrainable(nn.Module):
    """Hungry with one trainable scale, so that a training step has a backward and an optimizer state."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x):                               # x: (N, 1024)
        return (self.scale * x.repeat(1, 4096)).sum(dim=1)  # two (N, 4194304) float tensors alive: 32 MiB per sample


def broken_factory():
    """A factory that fails the way a real one does when its checkpoint is missing (a two-line message)."""
    raise RuntimeError("weights file not found\nsecond line of the message")


class Printer(nn.Module):
    """Prints while it is built and while it runs, as debugging code left in a model does."""

    def __init__(self) -> None:
        super().__init__()
        print("building Printer")
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        print("forward got", tuple(x.shape))
        return self.fc(x)


class Exiter(nn.Module):
    """Calls sys.exit(3) in forward."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def forward(self, x):
        raise SystemExit(3)


class ExitsWhenBuilt(nn.Module):
    """Calls sys.exit(4) in its constructor."""

    def __init__(self) -> None:
        super().__init__()
        raise SystemExit(4)


class ValueShaped(nn.Module):
    """Keeps the positive outputs of a layer: a shape that depends on the values (``nonzero``), as a mixture's
    Python loop over the experts its tokens chose."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 4)

    def forward(self, x):
        y = self.fc(x)
        return y[torch.nonzero(y > 0, as_tuple=True)]
