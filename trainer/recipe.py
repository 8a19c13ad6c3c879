"""One training iteration of the authors' recipe (`train_simple.py`, GPEN_SPEC §5):

    D step → R1 step every d_reg_every → G step → path-length step every g_reg_every → EMA.

Lazy regularization is data: a `LazyRegularizer` holds an interval, and the Adam correction
(lr·c, betas**c with c = k/(k+1)) and the loss gain (×k) are derived from it, so the numbers cannot
drift apart. Batch statistics (D's minibatch-stddev, the path-length mean) are per process, as in the
authors' DistributedDataParallel; gradients are averaged over processes by `sync_gradients`.
"""
import math
import time
from dataclasses import dataclass

import numpy as np
import paddle

from loss.adversarial import d_logistic_loss, g_nonsaturating_loss, path_length_penalty, r1_penalty
from loss.content import feature_matching_loss, smooth_l1_loss
from utils.errors import UserError
from utils.runtime import release_freed_memory


@dataclass
class LazyRegularizer:
    """A regularizer run every `interval` iterations (StyleGAN2's lazy regularization)."""
    interval: int
    weight: float

    def due(self, iteration):
        return self.interval > 0 and iteration % self.interval == 0

    @property
    def gain(self):
        """The penalty is applied once per interval, so it is weighted by the interval."""
        return self.weight * self.interval

    @property
    def correction(self):
        """c = k/(k+1): Adam's lr is multiplied by c and its betas raised to c (StyleGAN2 appendix B)."""
        return self.interval / (self.interval + 1) if self.interval > 0 else 1.0


def adam_settings(base_lr, beta1, beta2, regularizer):
    c = regularizer.correction
    return base_lr * c, beta1 ** c, beta2 ** c


def ema_decay(train_cfg, global_batch):
    """g_ema ← a·g_ema + (1−a)·g with a = 0.5 ** (images per step / half-life in images); a step counts
    as the authors' 32 images unless train.ema_authors_step_images is 0 (then as the global batch)."""
    images = train_cfg.ema_authors_step_images or global_batch
    return 0.5 ** (images / train_cfg.ema_halflife_images)


@paddle.no_grad()
def accumulate(g_ema, g, decay):
    """EMA over parameters (buffers are the constant blur kernels)."""
    ema_params = dict(g_ema.named_parameters())
    for name, param in g.named_parameters():
        target = ema_params[name]
        target.set_value(target * decay + param * (1 - decay))


def set_trainable(layer, flag):
    for p in layer.parameters():
        p.stop_gradient = not flag


def path_length_noise(seed, iteration, shape, rank=0, world_size=1):
    """N(0,1) noise for the path-length penalty, a function of (seed, iteration) only: the global batch
    is drawn and each process takes its part, so resuming and the process count change nothing.

    Drawn on the device by Paddle's generator, seeded for this draw with a key made of (seed,
    iteration); the generators' states are put back afterwards, so the rest of the run's random
    numbers do not depend on whether a path-length step ran. Nothing of the image's size is made on
    the host."""
    n = shape[0]
    key = int(np.random.SeedSequence([seed, iteration, 0x9A7]).generate_state(1)[0])
    states = [(device, paddle.get_rng_state(device)) for device in _generator_devices()]
    paddle.seed(key)
    full = paddle.randn([n * world_size] + list(shape[1:]), dtype="float32")
    for device, state in states:
        paddle.set_rng_state(state, device)
    return full[rank * n:(rank + 1) * n]


def _generator_devices():
    """The generators paddle.seed resets: the CPU's, and the current device's when it is not the CPU."""
    current = paddle.get_device().split(":")[0]
    return ["cpu"] if current == "cpu" else ["cpu", current]


class TrainStep:
    """Holds the networks, optimizers and loss settings; `__call__(i, degraded, real)` runs iteration i."""

    def __init__(self, cfg, generator, discriminator, g_ema, id_loss=None, world=None):
        t = cfg.train
        if t.batch_groups < 1 or t.batch_size % t.batch_groups:
            raise UserError(f"train.batch_groups={t.batch_groups} must divide train.batch_size={t.batch_size}")
        self.cfg = cfg
        self.g, self.d, self.g_ema = generator, discriminator, g_ema
        self.id_loss = id_loss if t.w_id > 0 else None
        self.world = world
        self.r1 = LazyRegularizer(t.d_reg_every, t.r1_gamma / 2)
        self.path = LazyRegularizer(t.g_reg_every, t.pl_weight)
        self.g_optim = self._optimizer(generator, t.g_lr, self.path)
        self.d_optim = self._optimizer(discriminator, t.d_lr, self.r1)
        self.ema_decay = ema_decay(t, t.batch_size * (world.size if world is not None else 1))
        self.mean_path_length = 0.0
        self.last = {}  # most recent value of every logged quantity (regularizers keep theirs between runs)
        self.phase_seconds = {}  # host time of each phase of the last iteration (for benchmarks)

    def _optimizer(self, layer, base_lr, regularizer):
        t = self.cfg.train
        lr, beta1, beta2 = adam_settings(base_lr, t.beta1, t.beta2, regularizer)
        # use_multi_tensor: the same Adam maths without the per-parameter kernel, after whose first step
        # every later CPU conv2d runs 2-3x slower (GPEN_SPEC §9).
        if t.optimizer == "adamw":
            return paddle.optimizer.AdamW(learning_rate=lr, beta1=beta1, beta2=beta2, epsilon=t.adam_eps,
                                          parameters=layer.parameters(), weight_decay=t.weight_decay,
                                          use_multi_tensor=True)
        return paddle.optimizer.Adam(learning_rate=lr, beta1=beta1, beta2=beta2, epsilon=t.adam_eps,
                                     parameters=layer.parameters(), use_multi_tensor=True)

    def base_lrs(self):
        """The corrected learning rates of G and D before any schedule."""
        t = self.cfg.train
        return (adam_settings(t.g_lr, t.beta1, t.beta2, self.path)[0],
                adam_settings(t.d_lr, t.beta1, t.beta2, self.r1)[0])

    def _step(self, optimizer, layer, loss):
        optimizer.clear_grad()
        loss.backward()
        if self.world is not None:
            self.world.sync_gradients(layer)
        optimizer.step()

    def _phase(self, name, start):
        release_freed_memory()  # bounds the heap's growth while freed memory is kept (utils.runtime.set_malloc)
        now = time.perf_counter()
        self.phase_seconds[name] = now - start
        return now

    def __call__(self, i, degraded, real, path_noise=None):
        """Iteration i on a batch; path_noise replaces the drawn path-length noise (tests)."""
        t = self.cfg.train
        log = {}
        self.phase_seconds = {}
        clock = time.perf_counter()

        # 1. Discriminator (generator frozen).
        set_trainable(self.g, False)
        set_trainable(self.d, True)
        with paddle.no_grad():
            fake, _ = self.g(degraded)
        groups = t.batch_groups
        # One pass of D over fake and real together: the minibatch-stddev groups are contiguous, so
        # 2·groups groups give each half exactly its own statistics (half the kernel launches).
        n = fake.shape[0]
        predictions = self.d(paddle.concat([fake, real]), groups=2 * groups)
        fake_pred, real_pred = predictions[:n], predictions[n:]
        d_loss = d_logistic_loss(real_pred, fake_pred)
        self._step(self.d_optim, self.d, d_loss)
        log.update(d=d_loss, real_score=real_pred.mean(), fake_score=fake_pred.mean())
        clock = self._phase("d", clock)

        # 2. R1 on real images.
        if self.r1.due(i):
            real_r1 = real.detach()
            real_r1.stop_gradient = False
            r1 = r1_penalty(self.d(real_r1, groups=groups), real_r1)
            self._step(self.d_optim, self.d, r1 * self.r1.gain)
            self.last["r1"] = r1
            clock = self._phase("r1", clock)

        # 3. Generator (discriminator frozen).
        set_trainable(self.g, True)
        set_trainable(self.d, False)
        fake, _ = self.g(degraded)
        terms = {}
        if t.w_feature > 0:
            fake_pred, fake_features = self.d(fake, return_features=True, groups=groups)
            with paddle.no_grad():
                _, real_features = self.d(real, return_features=True, groups=groups)
            terms["feature"] = feature_matching_loss(fake_features, real_features)
        else:
            fake_pred = self.d(fake, groups=groups)
        terms["adv"] = g_nonsaturating_loss(fake_pred)
        terms["content"] = smooth_l1_loss(fake, real)
        if self.id_loss is not None:
            terms["id"] = self.id_loss(fake, real).loss
        weights = {"adv": t.w_adv, "content": t.w_content, "feature": t.w_feature, "id": t.w_id}
        g_loss = sum(weights[k] * v for k, v in terms.items())
        self._step(self.g_optim, self.g, g_loss)
        log.update(g=g_loss, **{f"g_{k}": v for k, v in terms.items()})
        clock = self._phase("g", clock)

        # 4. Path-length regularization (on the whole batch, as the authors do).
        if self.path.due(i):
            z, features = self.g.encode(degraded)
            fake, latents = self.g.decode(z, features, return_latents=True)
            rank, world_size = (self.world.rank, self.world.size) if self.world is not None else (0, 1)
            noise = path_noise if path_noise is not None else path_length_noise(t.seed, i, fake.shape,
                                                                                 rank, world_size)
            penalty, path_mean, lengths = path_length_penalty(fake, latents, self.mean_path_length, noise,
                                                              decay=t.pl_decay, groups=groups, no_grad_vars=features)
            self._step(self.g_optim, self.g, penalty * self.path.gain)
            self.mean_path_length = self.world.mean(path_mean) if self.world is not None else path_mean
            self.last.update(path=penalty, path_length=lengths.mean())
            clock = self._phase("path", clock)
        set_trainable(self.d, True)

        # 5. EMA of the generator.
        accumulate(self.g_ema, self.g, self.ema_decay)
        self._phase("ema", clock)

        log.update(self.last)
        log["mean_path_length"] = self.mean_path_length
        return log


def to_floats(log):
    """Python floats of a step's log (one device sync for all values)."""
    names = list(log)
    values = paddle.stack([(log[k] if isinstance(log[k], paddle.Tensor) else paddle.to_tensor(log[k]))
                           .astype("float32").reshape([]) for k in names]).numpy()
    return {k: float(v) for k, v in zip(names, values)}


def finite(values):
    return all(math.isfinite(v) for v in values.values())
