"""GPEN's identity loss: 1 - cosine similarity of IR-SE50 ArcFace embeddings of restored and target faces.

The authors' `training/loss/id_loss.py` (after pSp): loss = mean over the batch of
1 - <e(y_hat), e(y)>, with e the unit-norm embedding of the cropped, 112x112-pooled face, and the
target's embedding detached. Their generator loss adds it with weight 1 (our `train.w_id`).

Differences from the authors' code, none of which changes the loss or its gradient:
* vectorised: no per-sample Python loop and no `float()` per sample; the logs are tensors;
* the degraded input x is optional: it only feeds the logs (`sim_improvement`, `id_logs`), so the
  training step leaves it out and saves a forward pass;
* y (and x) are embedded in one pass without building a graph, instead of embedding them with
  autograd and detaching afterwards;
* `IDLoss` is a plain class, not a Layer: a parent Layer that holds it does not list its 43.8 M
  frozen weights among its parameters (so they reach neither an optimizer nor a checkpoint), and its
  `.train()` cannot reach the recogniser (which ignores the training flag anyway, see arcface.py).
"""
import logging
from typing import NamedTuple, Optional

import paddle

from loss.arcface import face_input, load_backbone

_log = logging.getLogger(__name__)


class IDLossResult(NamedTuple):
    """Unpacks like the authors' (loss, sim_improvement, id_logs)."""

    loss: paddle.Tensor                        # scalar, differentiable w.r.t. y_hat
    sim_improvement: Optional[paddle.Tensor]   # scalar: mean <e(y_hat), e(y)> - <e(y), e(x)>; None without x
    id_logs: Optional[paddle.Tensor]           # (N, 3): [<e(y_hat),e(y)>, <e(y_hat),e(x)>, <e(y),e(x)>]; None without x


def _cosine(a, b):
    # Embeddings are unit-norm, so the inner product is the cosine similarity.
    return (a * b).sum(axis=1)


class IDLoss:
    """The identity loss with frozen IR-SE50 weights from `weights_path` (the authors'
    `model_ir_se50.pth`, either PyTorch container, or its .pdparams conversion).

    Images are (N, 3, H, W) RGB in [-1, 1] with H == W; at multiples of 256 px the face crop is
    exactly the authors', at other sizes it is scaled (see `loss.arcface.crop_box`).
    """

    def __init__(self, weights_path):
        self.weights_path = str(weights_path)
        self.backbone = load_backbone(weights_path)

    def embed(self, images):
        """Unit-norm embeddings (N, 512); differentiable w.r.t. `images` (never w.r.t. the weights)."""
        return self.backbone(face_input(images))

    def __call__(self, y_hat, y, x=None):
        """loss = mean(1 - <e(y_hat), e(y)>), gradient through y_hat only.

        Pass the degraded input `x` to also get `sim_improvement` and `id_logs` (one more embedding,
        computed in the same no-graph pass as y's); leave it out in training.
        """
        if y_hat.shape != y.shape or (x is not None and x.shape != y.shape):
            shapes = [list(t.shape) for t in (y_hat, y, x) if t is not None]
            raise ValueError(f"identity loss: y_hat, y (and x) must have the same shape, got {shapes}")
        batch = y.shape[0]
        with paddle.no_grad():
            reference = self.embed(y if x is None else paddle.concat([y, x], axis=0))
        e_y = reference[:batch]
        e_y_hat = self.embed(y_hat)
        target_similarity = _cosine(e_y_hat, e_y)
        loss = (1.0 - target_similarity).mean()
        if x is None:
            return IDLossResult(loss, None, None)
        e_x = reference[batch:]
        with paddle.no_grad():
            diff_target = target_similarity.detach()
            diff_input = _cosine(e_y_hat.detach(), e_x)
            diff_views = _cosine(e_y, e_x)
            id_logs = paddle.stack([diff_target, diff_input, diff_views], axis=1)
            sim_improvement = (diff_target - diff_views).mean()
        return IDLossResult(loss, sim_improvement, id_logs)

    def similarity(self, a, b):
        """Per-sample cosine similarity (N,) of the identities of two image batches, without a
        graph (for metrics: the ArcFace identity distance is 1 - this)."""
        with paddle.no_grad():
            embeddings = self.embed(paddle.concat([a, b], axis=0))
        return _cosine(embeddings[: a.shape[0]], embeddings[a.shape[0]:])


def build_id_loss(weights_path, logger=None):
    """An `IDLoss` from `weights_path` (train.id_weights), or None when it is empty; logs which, once."""
    logger = logger or _log
    if not weights_path:
        logger.info("identity loss off: no train.id_weights given")
        return None
    id_loss = IDLoss(weights_path)
    logger.info("identity loss on: IR-SE50 weights from %s", weights_path)
    return id_loss
