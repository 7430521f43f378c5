"""Paper 002: spatial transformer (identity start, grids, the paper's gradient equations),
localization settings (Table 2) and the recognition network (Table 1)."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from facelab import create_model
from facelab.models.stn import (
    LOCALIZATION_SETTINGS,
    TRANSFORM_PARAMS,
    LocalizationNet,
    SpatialTransformer,
    output_coordinates,
    projective_grid,
    projective_matrix,
    similarity_matrix,
)
from facelab.models.stn import RecognitionResNet

TRANSFORMS = list(TRANSFORM_PARAMS)


pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---------------------------------------------------------------- identity start, grids


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_every_transform_starts_as_the_centre_crop(transform):
    # 20 -> 12 keeps 0.6 of each side: output pixel j reads input pixel j + 4. (The learned
    # types hold 0.6 as a float32 bias, hence 1e-6 and not 1e-12; one pixel off would be O(1).)
    stn = SpatialTransformer(transform=transform, output_size=12, crop_fraction=12 / 20).double()
    x = torch.randn(2, 3, 20, 20, dtype=torch.float64)
    assert torch.allclose(stn(x), x[..., 4:16, 4:16], atol=1e-6)


@pytest.mark.parametrize("transform", TRANSFORMS)
def test_paper_sizes_start_as_the_centre_crop(transform):
    stn = SpatialTransformer(transform=transform)  # 144 loose crop -> 112 face
    x = torch.rand(1, 3, 144, 144)
    with torch.no_grad():
        # float32 grid coordinates are off by ~1e-5 pixel; a one-pixel shift would differ by ~0.3
        assert torch.allclose(stn(x), x[..., 16:128, 16:128], atol=1e-4)


@pytest.mark.parametrize("transform", ["similarity", "affine", "projective"])
def test_initial_prediction_ignores_the_input(transform):
    stn = SpatialTransformer(transform=transform)
    assert torch.count_nonzero(stn.localization.fc_out.weight) == 0
    params = stn.params(torch.randn(3, 3, 144, 144))
    assert params.shape == (3, TRANSFORM_PARAMS[transform])
    assert torch.allclose(params, stn.initial_params().expand(3, -1))


def test_projective_grid_equals_affine_grid_when_last_row_is_001():
    torch.manual_seed(0)
    affine = torch.randn(4, 2, 3, dtype=torch.float64)
    matrix = torch.cat([affine, torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64).expand(4, 1, 3)], 1)
    ours = projective_grid(matrix, (7, 9))
    ref = F.affine_grid(affine, [4, 1, 7, 9], align_corners=False)
    assert torch.allclose(ours, ref, atol=1e-12)


def test_projective_grid_matches_opencv_perspective_transform():
    params = torch.tensor([[0.9, 0.1, 0.05, -0.08, 1.1, -0.02, 0.15, -0.1]], dtype=torch.float64)
    matrix = projective_matrix(params)
    grid = projective_grid(matrix, (5, 6))[0].reshape(-1, 2).numpy()
    points = output_coordinates(5, 6, dtype=torch.float64).reshape(-1, 1, 2).numpy()
    ref = cv2.perspectiveTransform(points, matrix[0].numpy()).reshape(-1, 2)
    assert np.allclose(grid, ref, atol=1e-12)


def test_similarity_matrix_is_eq6():
    lam, alpha, t1, t2 = 1.5, math.pi / 2, 0.1, -0.2
    m = similarity_matrix(torch.tensor([[lam, alpha, t1, t2]], dtype=torch.float64))[0]
    # the x axis turns into the y axis (y points down: a clockwise quarter turn on screen)
    point = m @ torch.tensor([1.0, 0.0, 1.0], dtype=torch.float64)
    assert torch.allclose(point, torch.tensor([t1, lam + t2, 1.0], dtype=torch.float64), atol=1e-12)
    assert torch.allclose(torch.linalg.det(m[:2, :2]), torch.tensor(lam**2, dtype=torch.float64))


# ---------------------------------------------------------------- the paper's gradients


def _sample_eq2(u: np.ndarray, xs: np.ndarray, ys: np.ndarray):
    """Eq. (2) and its derivatives eqs. (4)-(5) in pixel coordinates (0-based, zeros outside).

    Returns V_i, dV_i/dx_i^s and dV_i/dy_i^s for the sampling points (xs, ys).
    """
    h_idx, w_idx = np.arange(u.shape[0])[:, None], np.arange(u.shape[1])[None, :]

    def k(d):  # max(0, 1 - |d|)
        return np.maximum(0.0, 1.0 - np.abs(d))

    def tf(d):  # eq. (5)
        return np.where(np.abs(d) > 1, 0.0, np.where(d > 0, 1.0, -1.0))

    v, dvdx, dvdy = (np.empty(len(xs)) for _ in range(3))
    for i, (x, y) in enumerate(zip(xs, ys, strict=True)):
        v[i] = np.sum(u * k(w_idx - x) * k(h_idx - y))
        dvdx[i] = np.sum(u * k(h_idx - y) * tf(w_idx - x))  # eq. (4)
        dvdy[i] = np.sum(u * k(w_idx - x) * tf(h_idx - y))  # eq. (4) for y
    return v, dvdx, dvdy


def _autograd_jacobian(transform: str, params: torch.Tensor, u: torch.Tensor, out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Sampled image ``V`` (flattened) and autograd's ``dV_i / d params`` through our STN code."""
    stn = SpatialTransformer(transform=transform, output_size=out).double()

    def sampled(p):
        grid = stn.grid_from_matrix(stn.matrix_from_params(p[None]), 1)
        return F.grid_sample(u[None, None], grid, mode="bilinear", padding_mode="zeros", align_corners=False).flatten()

    return sampled(params), torch.autograd.functional.jacobian(sampled, params)


def _normalised_chain(u, xs_n, ys_n):
    """V, dV/dx_s and dV/dy_s in the normalised coordinates the transforms act in."""
    height, width = u.shape
    # align_corners=False: pixel = ((normalised + 1) * size - 1) / 2
    v, dvdx_pix, dvdy_pix = _sample_eq2(u, ((xs_n + 1) * width - 1) / 2, ((ys_n + 1) * height - 1) / 2)
    return v, dvdx_pix * width / 2, dvdy_pix * height / 2, ((xs_n + 1) * width - 1) / 2, ((ys_n + 1) * height - 1) / 2


def _away_from_integers(*coords):
    # eq. (5) sets the gradient to zero where a kernel kink is hit; keep the case generic.
    return all(np.min(np.abs(c - np.round(c))) > 1e-3 for c in coords)


def test_projective_gradient_matches_eqs_3_to_5():
    u = torch.rand(5, 6, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    params = torch.tensor([0.8, 0.1, 0.05, -0.07, 0.75, 0.02, 0.12, -0.09], dtype=torch.float64)
    v_auto, jac = _autograd_jacobian("projective", params, u, out=4)

    t = output_coordinates(4, 4, dtype=torch.float64).reshape(-1, 2).numpy()
    xt, yt = t[:, 0], t[:, 1]
    th = params.numpy()
    z = th[6] * xt + th[7] * yt + 1  # z_i^s of eq. (1)
    xs = (th[0] * xt + th[1] * yt + th[2]) / z
    ys = (th[3] * xt + th[4] * yt + th[5]) / z
    v, dvdx, dvdy, px, py = _normalised_chain(u.numpy(), xs, ys)
    assert _away_from_integers(px, py)
    assert np.allclose(v, v_auto.numpy(), atol=1e-12)  # eq. (2) is grid_sample's bilinear kernel

    d_theta31 = -(xt / z) * (dvdx * xs + dvdy * ys)  # eq. (3)
    d_theta32 = -(yt / z) * (dvdx * xs + dvdy * ys)  # eq. (3) with y_t: the same derivation
    assert np.allclose(jac[:, 6].numpy(), d_theta31, atol=1e-10)
    assert np.allclose(jac[:, 7].numpy(), d_theta32, atol=1e-10)
    assert np.abs(d_theta31).max() > 1e-2  # not a vacuous comparison of zeros


def test_similarity_gradient_matches_eqs_7_and_8():
    u = torch.rand(6, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    lam, alpha, t1, t2 = 0.7, 0.35, 0.06, -0.04
    params = torch.tensor([lam, alpha, t1, t2], dtype=torch.float64)
    v_auto, jac = _autograd_jacobian("similarity", params, u, out=4)

    t = output_coordinates(4, 4, dtype=torch.float64).reshape(-1, 2).numpy()
    xt, yt = t[:, 0], t[:, 1]
    xs = lam * math.cos(alpha) * xt - lam * math.sin(alpha) * yt + t1  # eq. (6)
    ys = lam * math.sin(alpha) * xt + lam * math.cos(alpha) * yt + t2
    v, dvdx, dvdy, px, py = _normalised_chain(u.numpy(), xs, ys)
    assert _away_from_integers(px, py)
    assert np.allclose(v, v_auto.numpy(), atol=1e-12)

    d_alpha = dvdx * (t2 - ys) + dvdy * (xs - t1)  # eq. (7)
    d_lambda = dvdx * (xt * math.cos(alpha) - yt * math.sin(alpha)) + dvdy * (xt * math.sin(alpha) + yt * math.cos(alpha))
    assert np.allclose(jac[:, 1].numpy(), d_alpha, atol=1e-10)
    assert np.abs(d_alpha).max() > 1e-2 and np.abs(d_lambda).max() > 1e-2
    assert np.allclose(jac[:, 0].numpy(), d_lambda, atol=1e-10)  # eq. (8), see below
    # Eq. (8) as printed has dV/dx_s in both terms; its second factor must be dV/dy_s.
    d_lambda_as_printed = dvdx * (xt * math.cos(alpha) - yt * math.sin(alpha)) + dvdx * (
        xt * math.sin(alpha) + yt * math.cos(alpha)
    )
    assert not np.allclose(jac[:, 0].numpy(), d_lambda_as_printed, atol=1e-3)


# ---------------------------------------------------------------- localization (Table 2)


def test_localization_settings_are_table2():
    assert [s.name for s in LOCALIZATION_SETTINGS.values()] == ["1conv1FC", "2conv1FC", "3conv1FC", "2conv2FC", "3conv2FC"]


@pytest.mark.parametrize("setting", list(LOCALIZATION_SETTINGS))
def test_localization_network_structure(setting):
    spec = LOCALIZATION_SETTINGS[setting]
    net = LocalizationNet(setting=setting, num_outputs=10)  # 5 landmarks, the Table 2 task
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    fcs = [m for m in net.modules() if isinstance(m, nn.Linear)]
    assert len(convs) == int(spec.name[0]) and len(fcs) == int(spec.name[-3])
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert sum(isinstance(m, nn.BatchNorm2d) for m in net.modules()) == len(convs)
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == len(convs)
    # any input size is resized to 64x64 first
    seen = {}
    net.features.register_forward_pre_hook(lambda _m, args: seen.update(shape=tuple(args[0].shape)))
    assert net(torch.randn(2, 3, 150, 130)).shape == (2, 10)
    assert seen["shape"] == (2, 3, 64, 64)


def test_bad_settings_and_transforms_name_the_choices():
    with pytest.raises(ValueError, match="3conv1FC"):
        LocalizationNet(setting=6, num_outputs=4)
    with pytest.raises(ValueError, match="projective"):
        SpatialTransformer(transform="perspective")
    with pytest.raises(ValueError, match="input_size"):
        create_model("stn_resnet_affine", input_size=96, output_size=112)


# ---------------------------------------------------------------- recognition net (Table 1)


def test_recognition_network_is_table1():
    net = RecognitionResNet().eval()
    # Table 1: (filters, residual units) per stage, each after one stride-2 3x3 conv
    for name, filters, units in [("conv1", 64, 2), ("conv2", 128, 4), ("conv3", 256, 8), ("conv4", 512, 2)]:
        stage = getattr(net, name)
        assert stage.down[0].stride == (2, 2) and stage.down[0].out_channels == filters
        assert len(stage) == 1 + units
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 + 2 * (2 + 4 + 8 + 2) == 36
    assert all(c.kernel_size == (3, 3) for c in convs)
    shapes = {}
    for name in ("conv1", "conv2", "conv3", "conv4"):
        getattr(net, name).register_forward_hook(lambda _m, _i, o, name=name: shapes.__setitem__(name, tuple(o.shape[1:])))
    with torch.no_grad():
        emb = net.forward_features(torch.randn(1, 3, 112, 112))
    assert shapes == {"conv1": (64, 56, 56), "conv2": (128, 28, 28), "conv3": (256, 14, 14), "conv4": (512, 7, 7)}
    assert emb.shape == (1, 512)
    assert isinstance(net.dropout, nn.Dropout) and isinstance(net.bn, nn.BatchNorm1d)


def test_end_to_end_gradient_reaches_the_localization_network():
    torch.manual_seed(0)
    model = create_model("stn_resnet_projective", input_size=48, output_size=32).train()
    emb = model(torch.randn(2, 3, 48, 48))
    emb.square().sum().backward()
    fc_out = model.stn.localization.fc_out
    assert fc_out.weight.grad.abs().sum() > 0 and fc_out.bias.grad.abs().sum() > 0
    assert model.align(torch.randn(1, 3, 48, 48)).shape == (1, 3, 32, 32)
