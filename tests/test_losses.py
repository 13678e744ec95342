"""KeypointMSELoss: matches a hand computation, no 0.5 factor, weights respected, bad shapes rejected."""

import pytest
import torch

from wbpose.losses import KeypointMSELoss


def test_matches_hand_computation() -> None:
    pred = torch.zeros(1, 2, 2, 2)
    target = torch.zeros(1, 2, 2, 2)
    pred[0, 0, 0, 0] = 2.0  # squared error 4 on keypoint 0
    pred[0, 1, 1, 1] = 1.0  # squared error 1 on keypoint 1
    weights = torch.tensor([[1.0, 0.5]])
    # (1 * 4 + 0.5 * 1) / (1 * 2 * 2 * 2) = 0.5625; a 0.5 factor would give 0.28125.
    assert KeypointMSELoss()(pred, target, weights).item() == pytest.approx(0.5625)


def test_random_matches_formula_and_loss_weight() -> None:
    g = torch.Generator().manual_seed(0)
    pred, target = torch.randn(3, 5, 4, 6, generator=g), torch.randn(3, 5, 4, 6, generator=g)
    weights = torch.rand(3, 5, generator=g)
    expected = (weights[:, :, None, None] * (pred - target) ** 2).sum() / pred.numel()
    torch.testing.assert_close(KeypointMSELoss()(pred, target, weights), expected)
    torch.testing.assert_close(KeypointMSELoss(loss_weight=2.0)(pred, target, weights), 2 * expected)
    # No weights == all-ones weights == plain MSE.
    torch.testing.assert_close(KeypointMSELoss()(pred, target), torch.nn.functional.mse_loss(pred, target))


def test_zero_weights_give_zero_loss_and_gradient() -> None:
    pred = torch.randn(2, 4, 3, 3, requires_grad=True)
    loss = KeypointMSELoss()(pred, torch.randn(2, 4, 3, 3), torch.zeros(2, 4))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.count_nonzero(pred.grad) == 0


def test_low_precision_prediction_is_upcast() -> None:
    pred = torch.full((1, 1, 2, 2), 1.0, dtype=torch.bfloat16)
    target = torch.full((1, 1, 2, 2), 1.001)  # not representable next to 1.0 in bf16
    loss = KeypointMSELoss()(pred, target, torch.ones(1, 1))
    assert loss.dtype == torch.float32
    assert loss.item() == pytest.approx(1e-6, rel=1e-2)


@pytest.mark.parametrize(
    ("pred_shape", "target_shape", "weights_shape", "match"),
    [
        ((2, 3, 4, 4), (2, 3, 4, 5), (2, 3), "target shape"),
        ((2, 3, 4, 4), (2, 3, 4, 4), (2, 4), r"weights of shape \(B, K\)"),
        ((2, 3, 4, 4), (2, 3, 4, 4), (2, 3, 1), r"weights of shape \(B, K\)"),
        ((3, 4, 4), (3, 4, 4), (3,), r"pred of shape \(B, K, h, w\)"),
    ],
)
def test_shape_mismatch_raises(pred_shape, target_shape, weights_shape, match) -> None:
    with pytest.raises(ValueError, match=match):
        KeypointMSELoss()(torch.zeros(pred_shape), torch.zeros(target_shape), torch.ones(weights_shape))


def test_non_tensor_raises_type_error() -> None:
    with pytest.raises(TypeError, match="target must be a torch.Tensor"):
        KeypointMSELoss()(torch.zeros(1, 1, 2, 2), [[0.0]], torch.ones(1, 1))
