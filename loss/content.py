"""Content losses of the generator: SmoothL1 to the target and feature matching on D's activations."""
import paddle


def smooth_l1_loss(pred, target, beta=1.0):
    """PyTorch's `SmoothL1Loss(beta)` with mean reduction: 0.5·d²/β where |d| < β, else |d| − 0.5·β.

    Written out because Paddle's `F.smooth_l1_loss(delta=δ)` is a Huber loss equal to δ × PyTorch's
    smooth L1 for δ ≠ 1; with this formula β means what it means in the authors' code.
    """
    diff = paddle.abs(pred - target)
    return paddle.where(diff < beta, 0.5 * diff * diff / beta, diff - 0.5 * beta).mean()


def feature_matching_loss(fake_features, real_features):
    """Σ over D's activations (after each `convs` block, the stddev concatenation and `final_conv`) of
    the mean squared difference between the restored and the real face's features.

    The paper's L_F (β = 0.02) compares D's intermediate features of the two images; the real
    features carry no gradient (they are targets), the fake ones train the generator through D.
    """
    total = 0.0
    for fake, real in zip(fake_features, real_features):
        total = total + (fake - real.detach()).pow(2).mean()
    return total
