"""The training engine: a Lightning ``Trainer`` built in one place.

It wraps anything that satisfies the `Trainable` protocol (``protocol.py``) as a
``LightningModule`` and knows nothing about any one method; it never imports
``strategies/``. The method supplies the loss, the parameter groups and the
per-epoch changes; the engine supplies data loading (length-grouped batches
for text), AdamW with warm-up + cosine decay, validation on the selection
split, restoring the best epoch, early stopping, checkpoints, CSV logs, the
progress bar and seeding.
"""

from __future__ import annotations

import logging
import math
import os
import pickle
import signal
import time
import warnings
from collections.abc import Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping, RichProgressBar
from lightning.pytorch.loggers import CSVLogger
from torch.optim.lr_scheduler import CosineAnnealingLR, LinearLR, SequentialLR
from torch.utils.data import BatchSampler, DataLoader, Dataset, Sampler

from .._dist import global_rank
from .._perf import FlopCount, bf16_supported, utilisation
from .._progress import quiet
from .._seed import seed_step
from ..backbones import unpickling_reason
from ..errors import HeadstartError, Interrupted
from .protocol import FitContext, Trainable

for _name in ("lightning.pytorch", "lightning.fabric", "lightning"):
    logging.getLogger(_name).setLevel(logging.WARNING)
warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\).*")
warnings.filterwarnings("ignore", message=r".*module\(s\) in eval mode at the start of training.*")
warnings.filterwarnings("ignore", message=r".*does not have many workers.*")
warnings.filterwarnings("ignore", message=r".*validation_step` but have no `val_dataloader.*")  # no selection split



class _Examples(Dataset):
    """Examples by index; a training sampler asks for ``(epoch, index)`` so the batch knows where it is."""

    def __init__(self, items: list[Any], y: np.ndarray):
        self.items, self.y = items, y

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[Any, int, tuple[int, int] | None]:
        if isinstance(key, tuple):
            return self.items[key[1]], self.y[key[1]], key
        return self.items[key], self.y[key], None


class _Collate:
    """Rows -> (batch, labels). Training batches are built under a seed of (seed, epoch, first index)."""

    def __init__(self, batcher: Any, seed: int):
        self.batcher, self.seed = batcher, seed

    def __call__(self, rows: list[tuple[Any, Any, Any]]) -> tuple[Any, torch.Tensor]:
        items, ys, keys = zip(*rows)
        if keys[0] is not None:
            seed_step(self.seed, *keys[0])
        return self.batcher(list(items)), torch.as_tensor(np.asarray(ys))


class LengthGroupedBatches(Sampler[list[tuple[int, int]]]):
    """Shuffled batches of similar length: little padding, still random order.

    Each epoch: shuffle, cut into chunks of ``50 * batch_size``, sort each chunk
    by length, cut into batches, shuffle the batches.
    """

    def __init__(self, lengths: list[int], batch_size: int, seed: int):
        self.lengths, self.batch_size, self.seed, self.epoch = np.asarray(lengths), batch_size, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(len(self.lengths) / self.batch_size)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        rng = np.random.default_rng(self.seed + self.epoch)
        perm = rng.permutation(len(self.lengths))
        chunk = self.batch_size * 50
        batches = []
        for s in range(0, len(perm), chunk):
            part = perm[s : s + chunk]
            part = part[np.argsort(self.lengths[part], kind="stable")]
            batches.extend(part[i : i + self.batch_size].tolist() for i in range(0, len(part), self.batch_size))
        for j in rng.permutation(len(batches)):
            yield [(self.epoch, i) for i in batches[j]]


class EpochShuffle(Sampler[tuple[int, int]]):
    """A random order per epoch drawn from (seed, epoch): a resumed fit replays the same order."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:  # Lightning calls this before each epoch
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return iter([(self.epoch, i) for i in np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist()])


class RankSlice(Sampler[list[Any]]):
    """Each global batch of ``batches``, cut into ``world`` parts: this process takes part ``rank``.

    Every process sees the same global batches, in the same order, and DDP averages the parts' gradients: the
    step is the one a single process takes on the whole batch, so ``--batch-size``, the number of steps and the
    schedule do not change with ``--devices``. A part left empty (a last batch smaller than ``world``) repeats
    the batch's first example, so that every process takes every step.
    """

    def __init__(self, batches: Any, rank: int, world: int):
        self.batches, self.rank, self.world = batches, rank, world

    def set_epoch(self, epoch: int) -> None:
        for obj in (self.batches, getattr(self.batches, "sampler", None)):
            if hasattr(obj, "set_epoch"):
                obj.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __iter__(self) -> Iterator[list[Any]]:
        for batch in self.batches:
            batch = list(batch)
            yield batch[self.rank :: self.world] or batch[:1]


def loader_workers(requested: int | None) -> int:
    """``--num-workers``, or the default: none on a CPU (2-8 cores are better spent on the model's own threads;
    a preprocessing thread gained 8% on 2 cores, docs/design-notes.md), min(4, cores) when a GPU does the math."""
    if requested is not None:
        return requested
    return min(4, os.cpu_count() or 1) if torch.cuda.is_available() else 0


def make_loader(batcher: Any, items: list[Any], y: np.ndarray, *, train: bool, batch_size: int, seed: int,
                num_workers: int = 0, rank: int = 0, world: int = 1) -> DataLoader:
    """Batches of ``items`` through ``batcher`` (a `backbones.Batcher`): length-grouped when it knows lengths.

    ``world`` > 1: this process's part of every batch (`RankSlice`)."""
    ds = _Examples(items, y)
    collate = _Collate(batcher, seed)
    common = dict(collate_fn=collate, num_workers=num_workers, persistent_workers=num_workers > 0,
                  pin_memory=torch.cuda.is_available())  # page-locked batches copy to the GPU asynchronously
    batches: Any
    if batcher.lengths is not None:
        lengths = batcher.lengths(items)
        if train:
            batches = LengthGroupedBatches(lengths, batch_size, seed)
        else:
            order = np.argsort(lengths, kind="stable")
            batches = [order[i : i + batch_size].tolist() for i in range(0, len(order), batch_size)]
    elif world == 1:
        if train:
            return DataLoader(ds, batch_size=batch_size, sampler=EpochShuffle(len(ds), seed), **common)
        return DataLoader(ds, batch_size=batch_size, shuffle=False, **common)
    else:
        order = EpochShuffle(len(ds), seed) if train else range(len(ds))
        batches = BatchSampler(order, batch_size, drop_last=False)
    return DataLoader(ds, batch_sampler=RankSlice(batches, rank, world) if world > 1 else batches, **common)


class TrainableModule(L.LightningModule):
    """A `Trainable` as a LightningModule: the loop is Lightning's, the method is the trainable's."""

    def __init__(self, trainable: Trainable, ctx: FitContext, total_steps: int):
        super().__init__()
        self.trainable, self.ctx = trainable, ctx
        self.backbone, self.head = ctx.backbone, ctx.head
        self.extra = torch.nn.ModuleDict(trainable.extra_modules(ctx))  # trained and checkpointed with the model
        self.total_steps = total_steps
        self.lr, self.warmup, self.seed = ctx.cfg.lr, ctx.cfg.warmup, ctx.cfg.seed
        self._epoch_entered: int | None = None
        self.flops: FlopCount | None = FlopCount()
        self.flops_batch = 0
        self.sync = ctx.cfg.devices * ctx.cfg.num_nodes > 1  # epoch means over all processes' parts

    def _enter_epoch(self) -> None:
        """Train mode for the whole model, then the method's per-epoch changes (which put frozen parts
        back in eval mode), once per epoch. Also called from the first batch: Lightning skips
        ``on_train_epoch_start`` for the first epoch after a resume.

        Setting train mode here, not once per fit, matters: Lightning leaves the modes as they were, so a
        BatchNorm that a schedule had frozen (eval) stayed in eval after it was unfrozen in an uninterrupted
        fit but not in a resumed one."""
        if self._epoch_entered != self.current_epoch:
            self._epoch_entered = self.current_epoch
            self.train()
            self.trainable.on_epoch_start(self.current_epoch, self.ctx)

    def on_train_epoch_start(self) -> None:
        self._enter_epoch()

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["strategy_state"] = self.trainable.state_dict()

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.trainable.load_state_dict(checkpoint.get("strategy_state", {}))

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._enter_epoch()
        seed_step(self.seed, self.current_epoch, batch_idx, 1)  # dropout etc. of this step
        if self.flops is not None and not self.flops.flops and not self.flops.active:
            self.flops_batch = len(batch[1])
            self.flops.start()  # the forward of one real step: FLOPs per example for the MFU figure

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        out = self.trainable.training_step(batch, self.ctx)
        if self.flops is not None:
            self.flops.stop()  # forward only: see TRAIN_FLOPS_PER_FORWARD
        bs = len(batch[1])
        self.log("train_loss", out["loss"].detach(), on_step=False, on_epoch=True, batch_size=bs, sync_dist=self.sync)
        for k, v in out.get("log", {}).items():  # the method's own terms (source loss, penalty, ...)
            self.log(f"train_{k}", v.detach() if torch.is_tensor(v) else float(v), on_step=False, on_epoch=True,
                     batch_size=bs, sync_dist=self.sync)
        if "logits" in out and len(out["logits"]):
            y = out.get("y", batch[1])  # the labels the logits are for (a method may score part of a batch)
            self.log("train_acc", self.head.accuracy(out["logits"].detach(), y), on_step=False, on_epoch=True,
                     batch_size=len(y), sync_dist=self.sync)
        if not torch.isfinite(out["loss"]):
            raise FloatingPointError(
                f"loss became {out['loss'].item()} in epoch {self.current_epoch + 1}; lower the learning rate (--lr)"
            )
        return out["loss"]

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        out = self.trainable.validation_step(batch, self.ctx)
        bs = len(batch[1])
        self.log("val_loss", out["loss"], on_step=False, on_epoch=True, batch_size=bs, sync_dist=self.sync)
        self.log("val_acc", out["acc"], on_step=False, on_epoch=True, batch_size=bs, sync_dist=self.sync)

    def configure_optimizers(self) -> Any:
        groups = self.trainable.param_groups(self.ctx)
        # The fused kernel (CPU and CUDA) takes a third of the optimiser time of the for-each one.
        fused = all(p.dtype.is_floating_point for g in groups for p in g["params"])
        opt = torch.optim.AdamW(groups, lr=self.lr, fused=fused)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": warmup_cosine(opt, self.total_steps, self.warmup),
                                                   "interval": "step"}}


def warmup_cosine(opt: torch.optim.Optimizer, total_steps: int, warmup: float) -> torch.optim.lr_scheduler.LRScheduler:
    """Linear warm-up over ``warmup`` of the steps (from 1/warm of each group's LR), then cosine decay to 0.

    torch's own schedulers chained: `LinearLR` then `CosineAnnealingLR`.
    """
    warm = max(1, int(round(warmup * total_steps))) if warmup > 0 else 0
    cosine = CosineAnnealingLR(opt, T_max=max(1, total_steps - warm))
    if not warm:
        return cosine
    return SequentialLR(opt, [LinearLR(opt, start_factor=1.0 / warm, end_factor=1.0, total_iters=warm - 1 or 1), cosine],
                        milestones=[warm])


class _History(Callback):
    """One row per epoch: losses, accuracies, learning rate, wall time."""

    def __init__(self, rows: list[dict[str, Any]]):
        self.rows, self.t0 = rows, time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        m = trainer.callback_metrics
        row = {"epoch": trainer.current_epoch + 1}
        for k in ("train_loss", "train_acc", "val_loss", "val_acc"):
            if k in m:
                row[k] = round(float(m[k]), 6)
        for k in sorted(m):  # the method's own logged terms
            if k.startswith("train_") and k not in row and "_step" not in k and "_epoch" not in k:
                row[k] = round(float(m[k]), 6)
        row.update(module.trainable.epoch_record(module.ctx))
        row["lr"] = trainer.optimizers[0].param_groups[0]["lr"]
        row["seconds"] = round(time.perf_counter() - self.t0, 2)
        self.rows.append(row)

    # Saved in Lightning checkpoints, so a resumed run keeps the epochs before the interruption.
    def state_dict(self) -> dict[str, Any]:
        return {"rows": [dict(r) for r in self.rows]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.rows[:] = [dict(r) for r in state.get("rows", [])]


class _ResumePoint(Callback):
    """checkpoints/last.ckpt at the end of an epoch, at most every ``every`` seconds.

    Epoch ends only: a checkpoint from the middle of an epoch would resume with that
    epoch half-seen and its history row lost. Written to a temp file, then renamed.
    """

    def __init__(self, path: Any, every: float):
        self.path, self.every, self.last = path, every, time.monotonic()
        self.saved_epoch: int | None = None  # the epoch the checkpoint on disk ends with

    def on_train_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        due = time.monotonic() - self.last >= self.every and trainer.current_epoch + 1 < trainer.max_epochs
        # Saving is collective under DDP: every process must agree, and their clocks differ, so rank 0 decides.
        if not trainer.strategy.broadcast(due, src=0):
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.tmp")
        trainer.save_checkpoint(tmp)  # written by rank 0 only
        if trainer.is_global_zero:
            tmp.replace(self.path)
        self.last = time.monotonic()
        self.saved_epoch = trainer.current_epoch + 1


class _BestWeights(Callback):
    """Keep the weights of the epoch with the lowest selection loss; restore them at the end."""

    def __init__(self) -> None:
        self.best, self.state, self.epoch = math.inf, None, None

    def on_validation_epoch_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        if trainer.sanity_checking or "val_loss" not in trainer.callback_metrics:
            return
        loss = float(trainer.callback_metrics["val_loss"])
        if loss < self.best:
            self.best, self.epoch = loss, trainer.current_epoch + 1
            self.state = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    def restore(self, module: L.LightningModule) -> None:
        if self.state is not None:
            module.load_state_dict(self.state)


def _kept(ckpt: Any, point: _ResumePoint, what: str) -> str:
    """What a stopped fit leaves behind, and how to go on."""
    if point.saved_epoch is not None or ckpt.is_file():
        at = f" (end of epoch {point.saved_epoch})" if point.saved_epoch is not None else ""
        return f"{what}; the last checkpoint{at} is kept in {ckpt.parent}: continue with `headstart fit ... --resume`"
    return f"{what} before the first checkpoint; nothing to resume: start again with --overwrite"


def _log_version(logs: Any, resuming: bool) -> str:
    """logs/metrics.csv for a fit; logs/resume-N/ for its N-th resume (Lightning would replace the first)."""
    if not resuming:
        return ""
    n = 1
    while (logs / f"resume-{n}").exists():
        n += 1
    return f"resume-{n}"


def distribution(cfg: Any) -> tuple[int, int, Any]:
    """(this process's global rank, processes in all, Lightning strategy) for ``--devices``/``--num-nodes``."""
    world = cfg.devices * cfg.num_nodes
    if world == 1:
        return 0, 1, "auto"
    if cfg.distributed == "fsdp" and not torch.cuda.is_available():
        raise HeadstartError("option --distributed: fsdp shards parameters across GPUs and this machine has none; "
                             "use --distributed ddp on CPUs")
    if not torch.cuda.is_available() and not cfg.threads:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // cfg.devices))  # the processes share the cores
    return global_rank(cfg.devices), world, cfg.distributed


def train(trainable: Trainable, ctx: FitContext) -> None:
    """Fit ``trainable`` on ``ctx.data`` with Lightning; fills ``ctx.history`` and ``ctx.info``."""
    ctx.features = None  # features cached before training no longer describe the backbone once it trains
    cfg = ctx.cfg
    rank, world, how = distribution(cfg)
    tr_items, tr_y = trainable.train_examples(ctx)
    va_items, va_y = trainable.val_examples(ctx)
    tr_batcher, va_batcher = trainable.batcher(True, ctx), trainable.batcher(False, ctx)
    # Without augmentation every epoch would resize the same images again: do it once (images, within a budget).
    tr_items, va_items = tr_batcher.resized_once(tr_items), va_batcher.resized_once(va_items)
    train_dl = make_loader(tr_batcher, tr_items, tr_y, train=True, batch_size=trainable.batch_size(True, ctx), seed=cfg.seed,
                           num_workers=loader_workers(cfg.num_workers), rank=rank, world=world)
    val_dl = make_loader(va_batcher, va_items, va_y, train=False, batch_size=trainable.batch_size(False, ctx),
                         seed=cfg.seed, rank=rank, world=world) if len(va_items) else None
    total_steps = cfg.epochs * len(train_dl)
    module = TrainableModule(trainable, ctx, total_steps)
    restore = (cfg.restore_best or cfg.patience > 0) and val_dl is not None  # early stopping returns the best epoch
    best = _BestWeights()
    ckpt = ctx.run_dir / "checkpoints" / "last.ckpt"
    # History first: the resume point saves its state, so the row of the epoch just ended must be in it.
    # Time-throttled, not every epoch: a text model + AdamW state is ~270 MB.
    resume_point = _ResumePoint(ckpt, cfg.checkpoint_every)
    callbacks: list[Callback] = [_History(ctx.history), *([best] if restore else []), resume_point, *ctx.callbacks]
    if cfg.patience > 0 and val_dl is not None:
        callbacks.append(EarlyStopping(monitor="val_loss", patience=cfg.patience, mode="min"))
    show = not quiet()
    if show:
        callbacks.append(RichProgressBar(leave=False))
    bf16 = use_bf16(cfg, ctx.backbone.modality)
    trainer = L.Trainer(
        max_epochs=cfg.epochs,
        precision="bf16-mixed" if bf16 else "32-true",
        accelerator="auto",
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=how,
        use_distributed_sampler=False,  # the loaders already give each process its part of every batch
        logger=[CSVLogger(str(ctx.run_dir), name="logs", version=_log_version(ctx.run_dir / "logs", cfg.resume and ckpt.is_file())),
                *ctx.loggers],
        callbacks=callbacks,
        enable_progress_bar=show,
        enable_model_summary=False,
        inference_mode=False,  # selection under no_grad only: a method may adapt inside a selection step (MAML)
        enable_checkpointing=False,  # _ResumePoint writes the one checkpoint a resume needs
        num_sanity_val_steps=0,
        log_every_n_steps=max(1, min(50, len(train_dl))),
        deterministic=False,
    )
    module.to(memory_format=ctx.backbone.memory_format)  # the format the backbone's batches come in
    module.train()  # the method puts frozen parts back in eval mode in on_epoch_start
    t0 = time.perf_counter()
    resume = cfg.resume and ckpt.is_file()
    if cfg.compile:  # the instance attribute shadows the method; removed again below
        ctx.backbone.forward_features = torch.compile(ctx.backbone.forward_features)
    try:
        trainer.fit(module, train_dl, val_dl, ckpt_path=str(ckpt) if resume else None, weights_only=True if resume else None)
    except SystemExit:
        # Lightning answers Ctrl-C with sys.exit(1) and leaves SIGINT ignored: give both back to the caller.
        if not trainer.interrupted:
            raise
        signal.signal(signal.SIGINT, signal.default_int_handler)
        raise Interrupted(_kept(ckpt, resume_point, "interrupted")) from None
    except FloatingPointError as e:
        raise FloatingPointError(f"{e}; {_kept(ckpt, resume_point, 'stopped')}") from None
    except pickle.UnpicklingError as e:
        raise HeadstartError(
            f"{ckpt}: refused to load this checkpoint: it needs arbitrary unpickling ({unpickling_reason(e)}). "
            "headstart never runs pickled code; delete checkpoints/ and start again with --overwrite"
        ) from None
    finally:
        module.flops.stop()
        if cfg.compile:
            del ctx.backbone.forward_features
    seconds = time.perf_counter() - t0
    if restore:
        best.restore(module)
    epochs_run = trainer.current_epoch
    ctx.info.update({
        "epochs_run": int(epochs_run),
        "kept_epoch": best.epoch if restore else epochs_run,  # the epoch whose weights were saved
        "train_seconds": round(seconds, 2),
        "samples_per_second": round(len(tr_items) * max(1, epochs_run) / max(seconds, 1e-9), 1),
        "trainable_parameters": int(sum(p.numel() for p in module.parameters() if p.requires_grad)),
        "backbone_parameters": int(sum(p.numel() for p in ctx.backbone.parameters())),
        "precision": "bf16" if bf16 else "fp32",
        "compiled": bool(cfg.compile),
        "processes": int(trainer.world_size),  # as Lightning ran it: --devices x --num-nodes
    })
    if module.flops.flops and module.flops_batch:
        ctx.info.update(utilisation(TRAIN_FLOPS_PER_FORWARD * module.flops.flops / module.flops_batch,
                                    ctx.info["samples_per_second"], bf16))


# Training FLOPs per example = 3 x the counted forward (backward ~ 2 x forward: the usual MFU convention).
# The backward is not counted directly: torch's FlopCounterMode counts a depthwise convolution's backward
# as if it were dense (65x its forward for 64 groups, measured), which put a MobileNet's MFU at 75%.
TRAIN_FLOPS_PER_FORWARD = 3


def use_bf16(cfg: Any, modality: str) -> bool:
    """bf16 autocast for training: on request, or by default where it was measured to pay (see AUTO_BF16)."""
    if cfg.precision == "bf16":
        if not bf16_supported():
            raise HeadstartError("option --precision bf16: this machine does not run bf16 natively; use --precision 32")
        return True
    return cfg.precision == "auto" and modality in AUTO_BF16 and bf16_supported()


# Modalities whose default (--precision auto) is bf16 where the hardware runs it: decided from the
# accuracy and speed check in docs/benchmarks.md. None yet. On an AVX-512 BF16 CPU a small dense CNN trained
# 1.7x faster in bf16 (186 vs 108 samples/s), but the project's current machine (AMD EPYC, no AVX-512) emulates
# bf16: MobileNetV1 x0.25 inference ran at 16 images/s in bf16 against 254 in fp32, and depthwise convolutions
# gain little even where bf16 is native. A default that can be 16x slower is not made without a per-machine check.
AUTO_BF16: tuple[str, ...] = ()
