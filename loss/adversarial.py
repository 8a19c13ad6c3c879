"""GAN losses of the authors' `train_simple.py` (StyleGAN2's non-saturating logistic loss), and the two
lazy regularizers. R1 and path length differentiate a gradient, so they need `create_graph=True`
through the whole network (see model/layers.py for how every layer supports it)."""
import paddle
import paddle.nn.functional as F


def d_logistic_loss(real_pred, fake_pred):
    """Discriminator: softplus(−D(real)).mean() + softplus(D(fake)).mean()."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred):
    """Generator: softplus(−D(fake)).mean()."""
    return F.softplus(-fake_pred).mean()


def r1_penalty(real_pred, real_img):
    """Σ_pixels (∂ΣD(real)/∂real)², averaged over the batch (unweighted; the step applies γ/2·interval)."""
    (grad,) = paddle.grad(real_pred.sum(), real_img, create_graph=True)
    return grad.pow(2).reshape([grad.shape[0], -1]).sum(1).mean()


def path_length_penalty(fake_img, latents, mean_path_length, noise, decay=0.01, groups=1, no_grad_vars=None):
    """StyleGAN2's path-length penalty, as the authors compute it.

    noise: N(0,1) of the image's shape (drawn by the caller, so that a run is reproducible); it is
    scaled by 1/√(H·W) here. Returns (penalty, new mean path length (detached), per-sample lengths).
    The moving average is *not* detached inside the penalty: the authors' gradient flows through it.
    groups: the batch mean is taken per contiguous group (one per process in a multi-process run, see
    `train.batch_groups`); the penalty and the new mean are then averaged over the groups.
    no_grad_vars: tensors through which no path leads back to the latents (GPEN's encoder features,
    which enter the decoder beside them); naming them skips that part of the first backward pass. The
    penalty and its gradients are unchanged (bit-identical in tests).
    """
    h, w = fake_img.shape[2], fake_img.shape[3]
    noise = noise / (h * w) ** 0.5
    (grad,) = paddle.grad((fake_img * noise).sum(), latents, create_graph=True, no_grad_vars=no_grad_vars)
    lengths = paddle.sqrt(grad.pow(2).sum(2).mean(1))
    grouped = lengths.reshape([groups, -1])
    path_mean = mean_path_length + decay * (grouped.mean(axis=1, keepdim=True) - mean_path_length)
    penalty = (grouped - path_mean).pow(2).mean()
    return penalty, path_mean.mean().detach(), lengths
