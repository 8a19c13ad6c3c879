"""The training run: build everything from the Config, resume or start, run the iterations of
`TrainStep`, watch, validate, checkpoint, and stop cleanly (end, Ctrl-C / SIGTERM, early stop, NaN).

Run folder (train.output_dir):
    config.yaml            the resolved configuration
    train.log, vdl/        log lines and VisualDL scalars / images
    validation.csv         iteration,PSNR of g_ema on the validation faces
    samples/NNNNNN.png     degraded | restored | target grids
    checkpoints/iter_NNNNNN.pdckpt, latest.pdckpt, best.pdckpt   full training state
    g_ema.pdparams, g_ema_best.pdparams                          generator only, for predict/export
"""
import dataclasses
import math
import os
import shutil
import signal

import numpy as np
import paddle
from tqdm import tqdm

from data_loader.dataset import build_loader, build_test_dataset, build_train_dataset, resolve_mode
from metric.psnr import psnr_batch, summarize_psnr
from model.convert import load_state_dict, read_checkpoint
from model.loading import build_discriminator, build_generator, set_weights
from trainer import checkpoint as ckpt
from trainer.distributed import World
from trainer.monitor import Throughput, VisualDL, sample_grid, save_samples, setup_logging
from trainer.recipe import TrainStep, accumulate, finite, to_floats
from utils.config import config_to_dict, save_config
from utils.errors import UserError
from utils.imaging import to_images
from utils.runtime import select_device

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


def prepare_output_dir(t, logger_free_print=print):
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
            state, _, _ = load_state_dict(t.pretrain, kind="discriminator" if key == "d" else "generator", key=key)
            set_weights(layer, state, t.pretrain)
        logger.info(f"pretrain: g, g_ema and d from {t.pretrain} ({framework}); optimizers start afresh")
    else:
        state, _, _ = load_state_dict(t.pretrain, kind="generator")
        set_weights(step.g, state, t.pretrain)
        set_weights(step.g_ema, state, t.pretrain)
        logger.info(f"pretrain: generator and g_ema from {t.pretrain}")
        if t.pretrain_d:
            state, _, _ = load_state_dict(t.pretrain_d, kind="discriminator")
            set_weights(step.d, state, t.pretrain_d)
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
        self.pairs = None
        if cfg.data.test_path and cfg.train.val_count > 0:
            dataset = build_test_dataset(cfg)
            n = min(cfg.train.val_count, len(dataset))
            items = [dataset[i] for i in range(n)]
            self.lq = np.stack([lq for lq, _ in items])
            self.hq = to_images(np.stack([hq for _, hq in items]))
            self.batch = cfg.eval.batch_size

    @property
    def enabled(self):
        return hasattr(self, "lq")

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


def train(cfg):
    t = cfg.train
    world = World()
    device = select_device(cfg.runtime.device)
    if world.is_main:
        prepare_output_dir(t)
    world.barrier()
    logger = setup_logging(t.output_dir, world.is_main)
    if world.is_main:
        # The folder's config describes the run; overwrite and resume were actions of this command line.
        # Kept, `train.py -c run/config.yaml` to continue would wipe the run it meant to continue.
        save_config(dataclasses.replace(cfg, train=dataclasses.replace(t, overwrite=False, resume="")),
                    os.path.join(t.output_dir, "config.yaml"))

    # The same seed on every process: identical initial networks everywhere.
    paddle.seed(t.seed)
    generator, discriminator, g_ema = build_generator(cfg.model), build_discriminator(cfg.model), build_generator(cfg.model)
    g_ema.eval()
    accumulate(g_ema, generator, 0.0)  # g_ema starts as a copy of g (PaddleGAN's port forgot this)

    id_loss = None
    if t.w_id > 0:
        from loss.id_loss import build_id_loss
        id_loss = build_id_loss(t.id_weights, logger)
    step = TrainStep(cfg, generator, discriminator, g_ema, id_loss, world if world.size > 1 else None)

    start, data_origin, best_psnr, stale = t.start_iter, t.start_iter, -math.inf, 0
    path = resume_path(t)
    if path is not None:
        content = ckpt.load_checkpoint(path)
        ckpt.restore(step, content, path)
        start = content["iteration"] + 1
        data_origin = content.get("data_origin", 0)
        best_psnr = content.get("best_psnr", -math.inf)
        stale = content.get("stale_validations", 0)
        logger.info(f"resumed from {path} at iteration {start}")
    elif t.pretrain:
        load_pretrained(step, t, logger)

    mode = resolve_mode(cfg.data.degrade_on, device)
    device_degradation = None
    if mode == "device":
        from data_loader.device_degradation import DeviceDegradation
        device_degradation = DeviceDegradation(cfg.degradation, seed=world.process_seed(t.seed))
    stream = BatchStream(cfg, world, mode, device_degradation)
    stream.seek(start - data_origin)
    validation = Validation(cfg)
    vdl = VisualDL(t.output_dir, world.is_main)
    g_lr, d_lr = step.base_lrs()
    logger.info(f"training {cfg.model.size}px (mul {cfg.model.channel_multiplier}, narrow {cfg.model.narrow}) "
                f"on {device}, {world.size} process(es) x batch {t.batch_size}, iterations {start}..{t.max_iter - 1}, "
                f"{len(stream.dataset)} faces ({mode} degradation), G lr {g_lr:.6g}, D lr {d_lr:.6g}")
    if stream.dataset.summary():
        logger.warning(stream.dataset.summary())

    saved = {"at": None}

    def save(iteration, reason):
        """Checkpoint after `iteration` (once per iteration, whatever the reasons)."""
        if saved["at"] != iteration:
            if world.is_main:
                folder = os.path.join(t.output_dir, "checkpoints")
                numbered = os.path.join(folder, f"iter_{iteration:06d}{ckpt.CHECKPOINT_EXT}")
                ckpt.save_checkpoint(numbered, step, iteration, config_to_dict(cfg),
                                     dict(data_origin=data_origin, best_psnr=best_psnr, stale_validations=stale))
                ckpt.link_or_copy(numbered, os.path.join(folder, "latest" + ckpt.CHECKPOINT_EXT))
                ckpt.atomic_save(dict(g_ema.state_dict()), os.path.join(t.output_dir, "g_ema.pdparams"))
                ckpt.prune(folder, t.keep_last)
                logger.info(f"checkpoint {numbered} ({reason})")
            world.barrier()
            saved["at"] = iteration

    def mark_best(iteration):
        if world.is_main:
            folder = os.path.join(t.output_dir, "checkpoints")
            ckpt.link_or_copy(os.path.join(folder, f"iter_{iteration:06d}{ckpt.CHECKPOINT_EXT}"),
                              os.path.join(folder, "best" + ckpt.CHECKPOINT_EXT))
            ckpt.link_or_copy(os.path.join(t.output_dir, "g_ema.pdparams"),
                              os.path.join(t.output_dir, "g_ema_best.pdparams"))

    throughput = Throughput()
    bar = tqdm(range(start, t.max_iter), initial=0, total=max(t.max_iter - start, 0), dynamic_ncols=True,
               disable=not world.is_main)
    status, last_done = 0, None
    with StopRequest() as stop:
        for i in bar:
            factor = learning_rate_factor(t, i)
            step.g_optim.set_lr(g_lr * factor)
            step.d_optim.set_lr(d_lr * factor)
            degraded, real = stream.next(i)
            throughput.data_ready()
            values = to_floats(step(i, degraded, real))
            throughput.step_done(real.shape[0] * world.size)
            if not finite(values):
                bad = ", ".join(f"{k}={v}" for k, v in values.items() if not math.isfinite(v))
                logger.error(f"iteration {i}: non-finite loss ({bad}); stopping. The last good checkpoint "
                             f"is kept in {os.path.join(t.output_dir, 'checkpoints')}")
                status = 1
                break
            last_done = i
            bar.set_description(f"d {values['d']:.4f} g {values['g']:.4f} r1 {values.get('r1', 0):.4f}")
            if i % t.log_freq == 0:
                speed = throughput.report()
                logger.info(f"iter {i}: " + " ".join(f"{k} {v:.4f}" for k, v in values.items())
                            + " " + " ".join(f"{k}: {v:.5f}" for k, v in speed.items()) + " samples/s")
                vdl.scalars({**values, **speed, "g_lr": g_lr * factor, "d_lr": d_lr * factor}, i)
            if t.sample_freq > 0 and i % t.sample_freq == 0 and world.is_main:
                with paddle.no_grad():
                    restored, _ = g_ema(degraded)
                grid = sample_grid(degraded.numpy(), restored.numpy(), real.numpy())
                save_samples(t.output_dir, i, grid)
                vdl.image("samples", grid, i)
            if validation.enabled and t.val_freq > 0 and i % t.val_freq == 0:
                score = validation(g_ema)
                vdl.scalars({"psnr": score}, i, prefix="val")
                if world.is_main:
                    with open(os.path.join(t.output_dir, "validation.csv"), "a") as f:
                        f.write(f"{i},{score:.6f}\n")
                improved = score > best_psnr
                stale = 0 if improved else stale + 1
                logger.info(f"iter {i}: validation PSNR {score:.4f} dB (best {max(score, best_psnr):.4f})")
                if improved:
                    best_psnr = score
                    save(i, "best validation PSNR")
                    mark_best(i)
                if t.early_stop_patience > 0 and stale >= t.early_stop_patience:
                    logger.info(f"early stop: no better validation PSNR in {stale} validations")
                    save(i, "early stop")
                    break
            if i > start and t.save_freq > 0 and i % t.save_freq == 0:
                save(i, "every save_freq")
            if world.mean(float(stop.requested)) > 0 if world.size > 1 else stop.requested:
                save(i, "stop requested")
                logger.info(f"stopped at iteration {i}; continue with --resume auto")
                break
        else:
            if last_done is not None:
                save(last_done, "end of training")
    vdl.close()
    return status
