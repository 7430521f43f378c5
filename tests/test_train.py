import torch
from torch import nn
from torch.utils.data import TensorDataset

from facelab.train.loop import TrainConfig, embed, fit, parameter_groups


class Tiny(nn.Module):
    def __init__(self, classes: int = 3):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4, classes)

    def forward_features(self, x):
        return self.body(x)

    def forward(self, x):
        return self.fc(self.drop(self.forward_features(x)))


def data(n=48, classes=3):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % classes
    x = 0.3 * torch.randn(n, 3, 8, 8, generator=g)
    x[torch.arange(n), y] += 2.0  # the class is the channel that is bright
    return TensorDataset(x, y)


def make(seed=0):
    torch.manual_seed(seed)
    return Tiny()


def test_training_learns_a_separable_toy_problem():
    ds = data()
    model = make()
    history = fit(model, ds, TrainConfig(epochs=15, batch_size=8, lr=0.1, weight_decay=0.0), progress=False)
    assert history.train_loss[-1] < history.train_loss[0]
    x, y = ds.tensors
    model.eval()
    assert (model(x).argmax(1) == y).float().mean() > 0.9


def test_same_seed_same_numbers():
    cfg = TrainConfig(epochs=2, batch_size=8)
    a = fit(make(), data(), cfg, seed=3, progress=False)
    b = fit(make(), data(), cfg, seed=3, progress=False)
    assert a.train_loss == b.train_loss


def test_resume_from_checkpoint_equals_uninterrupted(tmp_path):
    ds, full_cfg = data(), TrainConfig(epochs=3, batch_size=8)
    m1 = make()
    full = fit(m1, ds, full_cfg, seed=1, progress=False)
    ckpt = tmp_path / "ckpt.pt"

    # Interrupt after the second epoch (its checkpoint is written), then resume.
    class Stop(Exception):
        pass

    def stop_after_second(epoch, history):
        if epoch == 1:
            raise Stop

    m2 = make()
    try:
        fit(m2, ds, full_cfg, seed=1, progress=False, checkpoint=ckpt, on_epoch=stop_after_second)
    except Stop:
        pass
    m3 = make()
    resumed = fit(m3, ds, full_cfg, seed=1, progress=False, checkpoint=ckpt)
    assert len(resumed.train_loss) == 3
    assert torch.allclose(torch.tensor(resumed.train_loss), torch.tensor(full.train_loss))
    for p, q in zip(m1.parameters(), m3.parameters()):
        assert torch.allclose(p, q)


def test_lr_multipliers_group_parameters():
    cfg = TrainConfig(epochs=1, lr=0.01, lr_mult=(("fc", 10.0),))
    groups = parameter_groups({"": Tiny()}, cfg)
    by_mult = {g["lr_mult"]: g for g in groups}
    assert by_mult[10.0]["lr"] == 0.1 and len(by_mult[10.0]["params"]) == 2
    assert by_mult[1.0]["lr"] == 0.01


def test_embed_shapes():
    out = embed(make(), data(10), batch_size=4)
    assert out.shape == (10, 4)
