"""Train a tiny CNN on synthetic tensors with ``facelab.train.loop.fit`` and a checkpoint (a helper
that tests/test_resume.py runs as a subprocess and kills; not a test).

    python tests/train_resume_script.py CHECKPOINT OUT [--epochs N] [--slow-after K]

Prints ``epoch K`` after each epoch's checkpoint is written. ``--slow-after K`` makes every
image of the epochs after epoch K take 5 ms longer to load (same data, same numbers) so that a
kill sent on ``epoch K`` lands in the middle of epoch K+1. At the end it saves the model's and the
head's state_dict and the history to OUT.
"""

from __future__ import annotations

import argparse
import time

import torch
from torch import nn
from torch.utils.data import Dataset


class Synthetic(Dataset):
    """``n`` images ``float32[3, 16, 16]`` with labels in ``range(classes)``, fixed by ``seed``."""

    def __init__(self, n: int, classes: int, seed: int):
        g = torch.Generator().manual_seed(seed)
        self.labels = torch.randint(0, classes, (n,), generator=g)
        centres = torch.randn(classes, 3, 16, 16, generator=g)
        self.images = centres[self.labels] + 0.8 * torch.randn(n, 3, 16, 16, generator=g)
        self.delay = 0.0

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int):
        if self.delay:
            time.sleep(self.delay)
        return self.images[i], int(self.labels[i])


class TinyNet(nn.Module):
    """Conv-BN-ReLU, dropout, a 32-d embedding (``forward_features``) and logits."""

    def __init__(self, classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(),
                                      nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Dropout(0.3), nn.Linear(128, 32))
        self.fc = nn.Linear(32, classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.forward_features(x))


def main() -> None:
    from facelab.train.loop import TrainConfig, fit

    p = argparse.ArgumentParser()
    p.add_argument("checkpoint")
    p.add_argument("out")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--slow-after", type=int, default=None)
    args = p.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)  # the initial weights (a resumed run loads them from the checkpoint)
    model = TinyNet()
    train, val = Synthetic(192, 5, seed=1), Synthetic(40, 5, seed=2)

    def on_epoch(epoch: int, history) -> None:
        print(f"epoch {epoch}", flush=True)
        if args.slow_after is not None and epoch >= args.slow_after:
            train.delay = 0.005

    config = TrainConfig(epochs=args.epochs, batch_size=32, lr=0.05, patience=0, lr_mult=(("fc", 2.0),))
    history = fit(model, train, config, val_set=val, seed=3, checkpoint=args.checkpoint, progress=False,
                  on_epoch=on_epoch)
    torch.save({"model": model.state_dict(), "history": history.as_dict()}, args.out)


if __name__ == "__main__":
    main()
