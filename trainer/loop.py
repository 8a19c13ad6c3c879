"""The training run: set up everything from the Config (or from the checkpoint it resumes), run the
iterations of `TrainStep`, watch, validate, checkpoint, and stop cleanly (end, Ctrl-C / SIGTERM, early
stop, NaN).

Run folder (train.output_dir):
    config.yaml            the resolved configuration
    train.log, vdl/        log lines and VisualDL scalars / images
    validation.csv         iteration,PSNR of g_ema on the validation faces
    samples/NNNNNN.png     degraded | restored | target grids
    checkpoints/iter_NNNNNN.pdckpt, latest.pdckpt, best.pdckpt   full training state
    g_ema.pdparams, g_ema_best.pdparams                          generator only, for predict/export

Between logging steps nothing is copied from the device: losses are read (and checked for NaN) every
`train.log_freq` iterations and before every checkpoint, so a checkpoint never holds a diverged run.
"""
import dataclasses
import math
import os
import shutil
import signal

import numpy as np
import paddle
from tqdm import tqdm

from data_loader.dataset import DegradedFaces, build_loader, build_train_dataset, resolve_mode
from metric.psnr import psnr_batch, summarize_psnr
from model.loading import (DISCRIMINATOR_WEIGHTS, GENERATOR_WEIGHTS, build_discriminator, build_generator,
                           set_weights)
from trainer import checkpoint as ckpt
from trainer.distributed import World
from trainer.monitor import Throughput, VisualDL, sample_grid, save_samples, setup_logging
from trainer.recipe import TrainStep, accumulate, finite, to_floats
from utils.config import config_to_dict, save_config
from utils.errors import UserError
from utils.imaging import to_images
from utils.runtime import select_device
from utils.weights import read_checkpoint, read_state_dict

RUN_FILES = ("checkpoints", "samples", "vdl", "train.log", "config.yaml", "validation.csv", "g_ema.pdparams",
             "g_ema_best.pdparams")


class StopRequest:
    """Ctrl-C / SIGTERM ask the loop to finish the iteration, save and exit; a second Ctrl-C aborts."""

    def __init__(self):
        self.requested = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def _handle(self, signum, frame):
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False


def prepare_output_dir(t):
    """Refuse to write into a previous run's folder unless resuming or told to overwrite."""
    out = t.output_dir
    existing = [n for n in RUN_FILES if os.path.exists(os.path.join(out, n))]
    if existing and not t.resume:
        if not t.overwrite:
            raise UserError(f"output folder {out} holds a previous run ({', '.join(existing)}); "
                            f"continue it with --resume auto, or start over with --overwrite")
        for name in existing:
            path = os.path.join(out, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    os.makedirs(os.path.join(out, "checkpoints"), exist_ok=True)


def resume_path(t):
    """The checkpoint train.resume names ('auto': the run folder's latest, None when there is none)."""
    if not t.resume:
        return None
    if t.resume != "auto":
        if not os.path.isfile(t.resume):
            raise UserError(f"checkpoint to resume not found: {t.resume}")
        return t.resume
    latest = os.path.join(t.output_dir, "checkpoints", "latest" + ckpt.CHECKPOINT_EXT)
    return latest if os.path.isfile(latest) else None


def load_pretrained(step, t, logger):
    """--pretrain: weights only (ours or the authors'); the optimizers start afresh."""
    content, framework = read_checkpoint(t.pretrain)
    if isinstance(content, dict) and "g" in content and "d" in content:  # a training checkpoint
        for key, layer in (("g", step.g), ("g_ema", step.g_ema), ("d", step.d)):
            kind = DISCRIMINATOR_WEIGHTS if key == "d" else GENERATOR_WEIGHTS
            set_weights(layer, read_state_dict(t.pretrain, kind, key=key).state, t.pretrain)
        logger.info(f"pretrain: g, g_ema and d from {t.pretrain} ({framework}); optimizers start afresh")
        return
    state = read_state_dict(t.pretrain, GENERATOR_WEIGHTS).state
    set_weights(step.g, state, t.pretrain)
    set_weights(step.g_ema, state, t.pretrain)
    logger.info(f"pretrain: generator and g_ema from {t.pretrain}")
    if t.pretrain_d:
        set_weights(step.d, read_state_dict(t.pretrain_d, DISCRIMINATOR_WEIGHTS).state, t.pretrain_d)
        logger.info(f"pretrain: discriminator from {t.pretrain_d}")
    else:
        logger.info("pretrain: the discriminator starts from random weights (set train.pretrain_d to load one)")


def learning_rate_factor(t, iteration):
    """Multiplier of the base lr at `iteration` (1 for the recipe's constant lr)."""
    if t.lr_schedule == "constant":
        return 1.0
    progress = iteration - t.start_iter
    if t.warmup_iters > 0 and progress < t.warmup_iters:
        return (progress + 1) / t.warmup_iters
    span = max(t.max_iter - t.start_iter - t.warmup_iters, 1)
    cosine = 0.5 * (1 + math.cos(math.pi * min(max(progress - t.warmup_iters, 0) / span, 1.0)))
    return t.min_lr_ratio + (1 - t.min_lr_ratio) * cosine


class Validation:
    """PSNR of g_ema on the first `val_count` faces of data.test_path, degraded with data.test_seed."""

    def __init__(self, cfg):
        self.enabled = bool(cfg.data.test_path) and cfg.train.val_count > 0
        if self.enabled:
            faces = DegradedFaces(cfg.data.test_path, cfg.model.size, cfg.data.interpolation, cfg.degradation,
                                  seed=cfg.data.test_seed)
            items = [faces[i] for i in range(min(cfg.train.val_count, len(faces)))]
            self.lq = np.stack([item["input"] for item in items])
            self.hq = np.stack([item["target"] for item in items])
            self.batch = cfg.eval.batch_size

    @paddle.no_grad()
    def __call__(self, generator):
        outputs = []
        for start in range(0, len(self.lq), self.batch):
            restored, _ = generator(paddle.to_tensor(self.lq[start:start + self.batch]))
            outputs.append(to_images(restored.numpy()))
        return summarize_psnr(psnr_batch(np.concatenate(outputs), self.hq)).mean


class BatchStream:
    """Endless (degraded, real) batches; batch k of the run is a function of (seed, k) alone, so a
    resumed run sees exactly the batches the uninterrupted one would have."""

    def __init__(self, cfg, world, mode, device_degradation):
        t = cfg.train
        self.dataset = build_train_dataset(cfg, mode)
        self.loader = build_loader(self.dataset, t.batch_size, num_workers=cfg.data.num_workers, shuffle=True,
                                   drop_last=True, seed=t.seed, rank=world.rank, world_size=world.size)
        self.per_epoch = len(self.loader.batch_sampler)
        if self.per_epoch == 0:
            raise UserError(f"{cfg.data.train_path}: {len(self.dataset)} images are fewer than one batch of "
                            f"{t.batch_size * world.size}; lower train.batch_size")
        self.device_degradation = device_degradation
        self.iterator = None

    def seek(self, batch_index):
        epoch, offset = divmod(batch_index, self.per_epoch)
        self.loader.batch_sampler.set_epoch(epoch)
        self.loader.batch_sampler.skip_batches = offset
        self.iterator = iter(self.loader)

    def next(self, step):
        """The batch of training step `step` (the device degradation is keyed by it)."""
        try:
            batch = next(self.iterator)
        except StopIteration:
            self.loader.batch_sampler.skip_batches = 0
            self.iterator = iter(self.loader)
            batch = next(self.iterator)
        if self.device_degradation is not None:
            self.device_degradation.seed_step(step)
            return self.device_degradation(batch if isinstance(batch, paddle.Tensor) else batch[0])
        degraded, real = batch
        return degraded, real


class TrainingRun:
    """One run of `train.py`: `TrainingRun(cfg).run()` -> exit status (0 done or stopped, 1 diverged).

    cfg: the command line's Config. command_line: its utils.config.CommandLine, so that a resumed run is
    rebuilt from the checkpoint's configuration with only what the command line named on top; without
    it every key of `cfg` counts as asked for.
    """

    def __init__(self, cfg, command_line=None):
        self.world = World()
        resumed_from = resume_path(cfg.train)
        content = ckpt.load_checkpoint(resumed_from) if resumed_from else None
        if content is not None:
            cfg = ckpt.resumed_config(content, resumed_from, command_line, requested=cfg)
        self.cfg = cfg
        t = cfg.train
        self.device = select_device(cfg.runtime.device)
        if self.world.is_main:
            prepare_output_dir(t)
        self.world.barrier()
        self.logger = setup_logging(t.output_dir, self.world.is_main)
        if self.world.is_main:
            # The folder's config describes the run; overwrite and resume were actions of this command line.
            # Kept, `train.py -c run/config.yaml` to continue would wipe the run it meant to continue.
            save_config(dataclasses.replace(cfg, train=dataclasses.replace(t, overwrite=False, resume="")),
                        os.path.join(t.output_dir, "config.yaml"))
        self.step = self._build_step()
        self.start, self.data_origin = t.start_iter, t.start_iter
        self.best_psnr, self.stale_validations, self.saved_at = -math.inf, 0, None
        if content is not None:
            self._restore(content, resumed_from)
        elif t.pretrain:
            load_pretrained(self.step, t, self.logger)
        self.stream = self._build_stream()
        self.validation = Validation(cfg)
        self.vdl = VisualDL(t.output_dir, self.world.is_main)
        self.throughput = Throughput()

    # -- set-up -------------------------------------------------------------------------------------
    def _build_step(self):
        cfg, t = self.cfg, self.cfg.train
        # The same seed on every process: identical initial networks everywhere.
        paddle.seed(t.seed)
        generator, discriminator, g_ema = (build_generator(cfg.model), build_discriminator(cfg.model),
                                           build_generator(cfg.model))
        g_ema.eval()
        accumulate(g_ema, generator, 0.0)  # g_ema starts as a copy of g (PaddleGAN's port forgot this)
        id_loss = None
        if t.w_id > 0:
            from loss.id_loss import build_id_loss
            id_loss = build_id_loss(t.id_weights, self.logger)
        return TrainStep(cfg, generator, discriminator, g_ema, id_loss, self.world if self.world.size > 1 else None)

    def _restore(self, content, path):
        ckpt.restore(self.step, content, path)
        self.start = content["iteration"] + 1
        self.data_origin = content.get("data_origin", 0)
        self.best_psnr = content.get("best_psnr", -math.inf)
        self.stale_validations = content.get("stale_validations", 0)
        self.logger.info(f"resumed from {path} at iteration {self.start}")

    def _build_stream(self):
        mode = resolve_mode(self.cfg.data.degrade_on, self.device)
        device_degradation = None
        if mode == "device":
            from data_loader.device_degradation import DeviceDegradation
            device_degradation = DeviceDegradation(self.cfg.degradation, seed=self.world.process_seed(self.cfg.train.seed))
        stream = BatchStream(self.cfg, self.world, mode, device_degradation)
        stream.seek(self.start - self.data_origin)
        self.logger.info(f"training {self.cfg.model.size}px (mul {self.cfg.model.channel_multiplier}, narrow "
                         f"{self.cfg.model.narrow}) on {self.device}, {self.world.size} process(es) x batch "
                         f"{self.cfg.train.batch_size}, iterations {self.start}..{self.cfg.train.max_iter - 1}, "
                         f"{len(stream.dataset)} faces ({mode} degradation), G lr {self.step.base_lrs()[0]:.6g}, "
                         f"D lr {self.step.base_lrs()[1]:.6g}")
        if stream.dataset.summary():
            self.logger.warning(stream.dataset.summary())
        return stream

    # -- the loop -----------------------------------------------------------------------------------
    def run(self):
        t = self.cfg.train
        bar = tqdm(range(self.start, t.max_iter), total=max(t.max_iter - self.start, 0), dynamic_ncols=True,
                   disable=not self.world.is_main)
        last_done = None
        with StopRequest() as stop:
            for i in bar:
                values = self._iteration(i)
                if self._reads_values(i) and not self._check(i, to_floats(values), bar):
                    return self._finish(1)
                last_done = i
                if self._after_iteration(i, values):
                    return self._finish(0)
                if stop.requested if self.world.size == 1 else self.world.mean(float(stop.requested)) > 0:
                    self.save(i, "stop requested", values)
                    self.logger.info(f"stopped at iteration {i}; continue with --resume auto")
                    return self._finish(0)
        if last_done is not None:
            self.save(last_done, "end of training", values)
        return self._finish(0)

    def _iteration(self, i):
        """One iteration of the recipe at the scheduled learning rate; the step's values, on the device."""
        factor = learning_rate_factor(self.cfg.train, i)
        g_lr, d_lr = self.step.base_lrs()
        self.step.g_optim.set_lr(g_lr * factor)
        self.step.d_optim.set_lr(d_lr * factor)
        degraded, real = self.stream.next(i)
        self.throughput.data_ready()
        values = self.step(i, degraded, real)
        self.throughput.step_done(real.shape[0] * self.world.size)
        self.batch = (degraded, real)
        return values

    def _reads_values(self, i):
        return i % self.cfg.train.log_freq == 0

    def _check(self, i, numbers, bar):
        """Log the step's numbers; False (and a message) when one is not finite."""
        if not finite(numbers):
            bad = ", ".join(f"{k}={v}" for k, v in numbers.items() if not math.isfinite(v))
            self.logger.error(f"iteration {i}: non-finite loss ({bad}); stopping. The last good checkpoint is kept "
                              f"in {os.path.join(self.cfg.train.output_dir, 'checkpoints')}")
            return False
        bar.set_description(f"d {numbers['d']:.4f} g {numbers['g']:.4f} r1 {numbers.get('r1', 0):.4f}")
        speed = self.throughput.report()
        self.logger.info(f"iter {i}: " + " ".join(f"{k} {v:.4f}" for k, v in numbers.items())
                         + " " + " ".join(f"{k}: {v:.5f}" for k, v in speed.items()) + " samples/s")
        factor = learning_rate_factor(self.cfg.train, i)
        g_lr, d_lr = self.step.base_lrs()
        self.vdl.scalars({**numbers, **speed, "g_lr": g_lr * factor, "d_lr": d_lr * factor}, i)
        return True

    def _after_iteration(self, i, values):
        """Samples, validation, periodic checkpoints; True when the run should end (early stop)."""
        t = self.cfg.train
        if t.sample_freq > 0 and i % t.sample_freq == 0 and self.world.is_main:
            self._write_samples(i)
        if self.validation.enabled and t.val_freq > 0 and i % t.val_freq == 0:
            if self._validate(i, values):
                return True
        if i > self.start and t.save_freq > 0 and i % t.save_freq == 0:
            self.save(i, "every save_freq", values)
        return False

    def _write_samples(self, i):
        degraded, real = self.batch
        with paddle.no_grad():
            restored, _ = self.step.g_ema(degraded)
        grid = sample_grid(degraded.numpy(), restored.numpy(), real.numpy())
        save_samples(self.cfg.train.output_dir, i, grid)
        self.vdl.image("samples", grid, i)

    def _validate(self, i, values):
        """Validation PSNR of g_ema; a new best is checkpointed. True when early stopping says stop."""
        t = self.cfg.train
        score = self.validation(self.step.g_ema)
        self.vdl.scalars({"psnr": score}, i, prefix="val")
        if self.world.is_main:
            with open(os.path.join(t.output_dir, "validation.csv"), "a") as f:
                f.write(f"{i},{score:.6f}\n")
        improved = score > self.best_psnr
        self.stale_validations = 0 if improved else self.stale_validations + 1
        self.logger.info(f"iter {i}: validation PSNR {score:.4f} dB (best {max(score, self.best_psnr):.4f})")
        if improved:
            self.best_psnr = score
            if self.save(i, "best validation PSNR", values):
                self._mark_best(i)
        if t.early_stop_patience > 0 and self.stale_validations >= t.early_stop_patience:
            self.logger.info(f"early stop: no better validation PSNR in {self.stale_validations} validations")
            self.save(i, "early stop", values)
            return True
        return False

    # -- checkpoints --------------------------------------------------------------------------------
    def save(self, iteration, reason, values):
        """Checkpoint after `iteration` (once per iteration, whatever the reasons); refused (with a log
        line) when that iteration's values are not finite, so the last checkpoint stays a good one.
        Returns whether the checkpoint of `iteration` exists."""
        if self.saved_at == iteration:
            return True
        if not finite(to_floats(values)):
            self.logger.error(f"iteration {iteration}: non-finite values; no checkpoint written ({reason})")
            return False
        t = self.cfg.train
        if self.world.is_main:
            folder = os.path.join(t.output_dir, "checkpoints")
            numbered = os.path.join(folder, f"iter_{iteration:06d}{ckpt.CHECKPOINT_EXT}")
            ckpt.save_checkpoint(numbered, self.step, iteration, config_to_dict(self.cfg),
                                 dict(data_origin=self.data_origin, best_psnr=self.best_psnr,
                                      stale_validations=self.stale_validations))
            ckpt.link_or_copy(numbered, os.path.join(folder, "latest" + ckpt.CHECKPOINT_EXT))
            ckpt.atomic_save(dict(self.step.g_ema.state_dict()), os.path.join(t.output_dir, "g_ema.pdparams"))
            ckpt.prune(folder, t.keep_last)
            self.logger.info(f"checkpoint {numbered} ({reason})")
        self.world.barrier()
        self.saved_at = iteration
        return True

    def _mark_best(self, iteration):
        if self.world.is_main:
            out = self.cfg.train.output_dir
            folder = os.path.join(out, "checkpoints")
            ckpt.link_or_copy(os.path.join(folder, f"iter_{iteration:06d}{ckpt.CHECKPOINT_EXT}"),
                              os.path.join(folder, "best" + ckpt.CHECKPOINT_EXT))
            ckpt.link_or_copy(os.path.join(out, "g_ema.pdparams"), os.path.join(out, "g_ema_best.pdparams"))

    def _finish(self, status):
        self.vdl.close()
        return status


def train(cfg, command_line=None):
    """Run training for `cfg` (see TrainingRun); returns the exit status."""
    return TrainingRun(cfg, command_line).run()
