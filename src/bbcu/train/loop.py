"""The trainer: L1 + Adam + MultiStepLR over resumable batches, with validation, EMA, clipping and DDP.

One call, ``train(config, run_dir)``, runs a recipe from wherever its run directory left off. Every
iteration: move IR-Net's EDE schedule, forward (optionally bf16 autocast), L1 against the ground truth,
backward (DDP averages gradients), stop cleanly on a non-finite loss, clip, step, update the EMA. Then,
on rank 0 only and in this order: log, validate (and keep best weights), checkpoint. Checkpointing after
validation means a resumed run restores exactly the state an uninterrupted one would carry on with.
"""

from __future__ import annotations

import copy
import logging
import random
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from bbcu.archs.registry import create_model
from bbcu.binary.units import set_training_progress
from bbcu.core.atomic import atomic_write_bytes
from bbcu.core.errors import ConfigError, InvalidArgumentError, InvalidFileError, NonFiniteError
from bbcu.formats import weights
from bbcu.train import faults
from bbcu.train.checkpoint import list_checkpoints, save_checkpoint
from bbcu.train.config import config_to_dict, init_weights_path
from bbcu.train.data import build_train_set
from bbcu.train.distributed import (
    DistContext,
    barrier,
    close_distributed,
    gather_objects,
    init_distributed,
    mean_over_ranks,
)
from bbcu.train.ema import WeightEMA
from bbcu.train.logs import RunLog
from bbcu.train.sampler import BatchOrder
from bbcu.train.schema import TrainConfig
from bbcu.train.validation import validate

logger = logging.getLogger(__name__)

WEIGHTS_DIR = "weights"
BEST_WEIGHTS = "best.safetensors"
LAST_WEIGHTS = "last.safetensors"
RECIPE_NAME = "config.yml"


@dataclass
class TrainState:
    """Everything that changes while training; exactly what a checkpoint stores.

    Attributes:
        model: The trained network (unwrapped: not DDP, not compiled).
        optimizer: Adam over the model's parameters.
        scheduler: MultiStepLR of the optimizer.
        ema: The weight average, or None when ``train.ema_decay`` is null.
        iteration: Completed optimizer steps.
        epoch: Epoch of the next batch.
        step: Index of the next batch within its epoch.
        best_score: Best validation PSNR so far (first validation set), or None before any.
        best_iteration: Iteration at which ``best_score`` was reached.
    """

    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.MultiStepLR
    ema: WeightEMA | None
    iteration: int = 0
    epoch: int = 0
    step: int = 0
    best_score: float | None = None
    best_iteration: int | None = None

    @property
    def shipped_model(self) -> nn.Module:
        """The model validated and saved as weights: the EMA when there is one."""
        return self.ema.model if self.ema is not None else self.model


def train(
    config: TrainConfig,
    run_dir: Path,
    data_root: Path,
    resume: dict[str, Any] | None = None,
    *,
    progress: bool = False,
) -> TrainState:
    """Run (or continue) a training recipe to ``train.iterations``.

    Args:
        config: The validated recipe.
        run_dir: Where checkpoints, weights and logs go.
        data_root: Root that ``data.train`` folders and validation sets are relative to.
        resume: A loaded checkpoint to continue from, or None to start afresh.
        progress: Draw a progress bar on stderr (rank 0), as ``bbcu train`` does; library callers
            get a silent run and read ``log.csv``.

    Returns:
        The final training state.

    Raises:
        NonFiniteError: On a non-finite loss (the last good checkpoint is kept).
        InvalidArgumentError: A batch larger than the training set, a device that is absent or a resume
            with another process count.
        InvalidFileError: A ``model.init`` file that does not fit the model.
        DataNotFoundError: A training folder missing under ``data_root``.
        ConfigError: A resume whose recipe wants an EMA the checkpoint does not have.
    """
    context = init_distributed(config.runtime.device)
    try:
        return _Trainer(config, run_dir, data_root, context, resume).run(progress)
    finally:
        close_distributed(context)


class _Trainer:
    """One training run on one process; the methods are the phases of ``run``."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        data_root: Path,
        context: DistContext,
        resume: dict[str, Any] | None,
    ) -> None:
        self.config, self.run_dir, self.data_root, self.context = config, run_dir, data_root, context
        if config.runtime.threads is not None:
            torch.set_num_threads(config.runtime.threads)
        # Training patches have one fixed size, so cuDNN's per-shape algorithm search pays for itself.
        torch.backends.cudnn.benchmark = context.device.type == "cuda"
        self.state = build_state(config, context.device)
        if resume is not None:
            restore_state(self.state, resume, context, config)
        elif config.model.init is not None:
            kept = initialise_from(self.state.model, init_weights_path(config.model.init))
            if context.is_main:
                logger.info("started from %s; fresh: %s", config.model.init, ", ".join(kept) or "nothing")
        self.train_model = _prepare_for_training(self.state.model, config, context)
        self.dataset = build_train_set(config, data_root)
        self.order = BatchOrder(
            len(self.dataset), config.train.batch_size, config.train.seed, context.rank, context.world_size
        )
        self.log = None
        if context.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            recipe = yaml.safe_dump(config_to_dict(config), sort_keys=False).encode()
            atomic_write_bytes(run_dir / RECIPE_NAME, recipe)
            self.log = RunLog(run_dir, config.output.tensorboard, self.state.iteration)
        self._loss_sum, self._loss_count = 0.0, 0
        # Last, so that nothing above can draw from the generators between here and the first step.
        if resume is not None:
            _set_rng_state(resume["rng"][context.rank])
        else:
            _seed_everything(config.train.seed + context.rank)

    def run(self, show_progress: bool) -> TrainState:
        """Iterate to the configured length, then validate, checkpoint and plot one last time."""
        total = self.config.train.iterations
        progress = tqdm(
            total=total, initial=self.state.iteration, unit="it", dynamic_ncols=True,
            disable=not (show_progress and self.context.is_main), desc=self.config.model.name,
        )  # fmt: skip
        try:
            if self.state.iteration == 0 and self.config.val.every:
                self._validate()  # the starting score, so the curve shows what training gained
            while self.state.iteration < total:
                for batch in self._epoch_loader():
                    loss = self._train_step(batch)
                    progress.update(1)
                    progress.set_postfix(
                        loss=f"{loss:.4g}", lr=f"{self.state.scheduler.get_last_lr()[0]:.3g}"
                    )
                    self._after_step(loss)
                    if self.state.iteration >= total:
                        break
            self._finish()
        finally:
            progress.close()
            if self.log is not None:
                self.log.close()
        return self.state

    def _epoch_loader(self) -> DataLoader:
        """The rest of the current epoch's batches, with the dataset told which epoch it is."""
        if hasattr(self.dataset, "set_epoch"):
            self.dataset.set_epoch(self.state.epoch)
        batches = list(self.order.epoch_batches(self.state.epoch, self.state.step))
        return DataLoader(self.dataset, batch_sampler=batches, num_workers=self.config.data.num_workers)

    def _train_step(self, batch: dict[str, torch.Tensor]) -> float:
        """One optimizer step; returns the loss averaged over ranks."""
        state, config, device = self.state, self.config, self.context.device
        set_training_progress(state.model, state.iteration / config.train.iterations)
        memory_format = torch.channels_last if config.runtime.channels_last else torch.contiguous_format
        lq = batch["lq"].to(device, memory_format=memory_format)
        gt = batch["gt"].to(device, memory_format=memory_format)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=config.runtime.bf16):
            output = self.train_model(lq)
        loss = F.l1_loss(output.float(), gt)
        state.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        mean_loss = float(mean_over_ranks(loss.detach(), self.context))
        if not np.isfinite(mean_loss):
            raise NonFiniteError(self._diverged_message(mean_loss))
        if config.train.grad_clip is not None:
            nn.utils.clip_grad_norm_(state.model.parameters(), config.train.grad_clip)
        state.optimizer.step()
        state.scheduler.step()
        if state.ema is not None:
            state.ema.update(state.model)
        state.iteration += 1
        state.step += 1
        if state.step == self.order.steps_per_epoch:
            state.epoch, state.step = state.epoch + 1, 0
        return mean_loss

    def _after_step(self, loss: float) -> None:
        """Log, validate and checkpoint when their intervals come due (rank 0 does the writing)."""
        iteration, config = self.state.iteration, self.config
        faults.after_step(iteration)
        self._loss_sum, self._loss_count = self._loss_sum + loss, self._loss_count + 1
        if self.log is not None and iteration % config.train.log_every == 0:
            lr = self.state.scheduler.get_last_lr()[0]
            self.log.scalars(iteration, {"train/loss": self._loss_sum / self._loss_count, "train/lr": lr})
            self._loss_sum, self._loss_count = 0.0, 0
        if config.val.every and iteration % config.val.every == 0:
            self._validate()
        if iteration % config.train.checkpoint_every == 0:
            self._checkpoint()

    def _finish(self) -> None:
        """Make sure the final iteration is validated and checkpointed, and redraw the curves."""
        iteration, config = self.state.iteration, self.config
        if config.val.every and iteration % config.val.every != 0:
            self._validate()
        if iteration % config.train.checkpoint_every != 0:
            self._checkpoint()
        if self.log is not None:
            self.log.plot()

    def _validate(self) -> None:
        """Score the shipped model on the validation sets; keep the best weights (rank 0)."""
        if self.context.is_main:
            assert self.log is not None
            # A copy is validated so inference's in-place eval()/channels_last never touch training.
            scores = validate(
                copy.deepcopy(self.state.shipped_model), self.config, self.data_root, self.context.device
            )
            self.log.scalars(
                self.state.iteration, {f"val/{s}/{m}": v for s, d in scores.items() for m, v in d.items()}
            )
            score = scores[self.config.val.sets[0]]["psnr"]
            if self.state.best_score is None or score > self.state.best_score:
                self.state.best_score, self.state.best_iteration = score, self.state.iteration
                self._save_weights(BEST_WEIGHTS)
            self.log.plot()
        barrier(self.context)

    def _checkpoint(self) -> None:
        """Write the complete training state and the last weights (rank 0; all ranks give their RNG)."""
        rng_states = gather_objects(_rng_state(), self.context)
        if self.context.is_main:
            state = checkpoint_state(self.state, self.config, rng_states, self.context.world_size)
            save_checkpoint(self.run_dir, self.state.iteration, state, self.config.output.keep_checkpoints)
            self._save_weights(LAST_WEIGHTS)
        barrier(self.context)

    def _save_weights(self, name: str) -> None:
        folder = self.run_dir / WEIGHTS_DIR
        folder.mkdir(parents=True, exist_ok=True)
        weights.save(self.state.shipped_model, folder / name)

    def _diverged_message(self, loss: float) -> str:
        saved = list_checkpoints(self.run_dir)
        kept = f"the last good checkpoint is {saved[-1]}" if saved else "no checkpoint was written yet"
        return (
            f"loss became {loss} at iteration {self.state.iteration + 1}; stopped before the update; {kept}. "
            "Lower optim.lr or set train.grad_clip"
        )


def build_state(config: TrainConfig, device: torch.device) -> TrainState:
    """Fresh model, optimizer, scheduler and EMA, with the model initialised from ``train.seed``."""
    _seed_everything(config.train.seed)
    model = create_model(config.model.name, **model_kwargs(config)).to(device)
    if config.runtime.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.Adam(
        model.parameters(),
        lr=config.optim.lr,
        betas=config.optim.betas,
        weight_decay=config.optim.weight_decay,
    )
    scheduler = torch.optim.lr_scheduler.MultiStepLR(
        optimizer, milestones=config.scheduler.milestones, gamma=config.scheduler.gamma
    )
    ema = WeightEMA(model, config.train.ema_decay) if config.train.ema_decay is not None else None
    return TrainState(model, optimizer, scheduler, ema)


def initialise_from(model: nn.Module, path: Path) -> list[str]:
    """Copy every tensor of the weights file at ``path`` whose name and shape match into ``model``.

    Returns:
        The names of the model's tensors left at their fresh initialisation (e.g. a new upsampler).

    Raises:
        InvalidFileError: If the file cannot be loaded, or nothing in it fits the model.
    """
    source = weights.load(path).state_dict()
    target = model.state_dict()
    matching = {k: v for k, v in source.items() if k in target and v.shape == target[k].shape}
    if not matching:
        raise InvalidFileError(
            f"model.init: nothing in {path} fits {model.model_name} (no tensor of the same name and shape)"
        )
    with torch.no_grad():
        for key, tensor in matching.items():
            target[key].copy_(tensor)
    return sorted(set(target) - set(matching))


def model_kwargs(config: TrainConfig) -> dict[str, Any]:
    """Factory arguments: ``model.kwargs`` plus ``scale`` for SR models."""
    kwargs = dict(config.model.kwargs)
    if config.task == "sr":
        kwargs["scale"] = config.model.scale
    return kwargs


def checkpoint_state(
    state: TrainState, config: TrainConfig, rng_states: list[dict[str, Any]], world_size: int
) -> dict[str, Any]:
    """The checkpoint mapping: tensors and plain Python values only (``weights_only`` loadable).

    ``save_checkpoint`` adds the format number, which ``load_latest_checkpoint`` checks.
    """
    return {
        "iteration": state.iteration,
        "sampler": {"epoch": state.epoch, "step": state.step, "world_size": world_size},
        "model": state.model.state_dict(),
        "ema": state.ema.model.state_dict() if state.ema is not None else None,
        "optimizer": state.optimizer.state_dict(),
        "scheduler": state.scheduler.state_dict(),
        "rng": rng_states,
        "best": {"score": state.best_score, "iteration": state.best_iteration},
        "config": config_to_dict(config),
    }


def restore_state(
    state: TrainState, checkpoint: dict[str, Any], context: DistContext, config: TrainConfig
) -> None:
    """Load a checkpoint into a freshly built state (the random generators are restored separately).

    The optimizer and scheduler come back with the hyper-parameters they were saved with; ``config``'s
    are then put back in force, so ``--resume RUN --set optim.lr=...`` or ``scheduler.milestones=...``
    changes the rest of the run instead of being silently overridden by the checkpoint.
    """
    state.model.load_state_dict(checkpoint["model"])
    if state.ema is not None:
        if checkpoint["ema"] is None:
            raise ConfigError("train.ema_decay is set but the checkpoint was trained without EMA")
        state.ema.model.load_state_dict(checkpoint["ema"])
    state.optimizer.load_state_dict(checkpoint["optimizer"])
    state.scheduler.load_state_dict(checkpoint["scheduler"])
    _apply_recipe_schedule(state, checkpoint["config"], config)
    state.iteration = checkpoint["iteration"]
    state.epoch, state.step = checkpoint["sampler"]["epoch"], checkpoint["sampler"]["step"]
    state.best_score, state.best_iteration = checkpoint["best"]["score"], checkpoint["best"]["iteration"]
    if checkpoint["sampler"]["world_size"] != context.world_size:
        raise InvalidArgumentError(
            f"the checkpoint was written by {checkpoint['sampler']['world_size']} processes; resume with "
            f"the same number (this run has {context.world_size}) so the batches stay the same"
        )


def _apply_recipe_schedule(state: TrainState, saved: dict[str, Any], config: TrainConfig) -> None:
    """Make a resumed optimizer and scheduler follow ``config`` where it differs from the saved recipe.

    Only a changed learning rate, milestone list or gamma recomputes the rate, in closed form
    (``lr * gamma ** milestones passed``), so milestones already passed under the new list count too;
    an unchanged recipe keeps the restored rate bit for bit (the chained products of ``MultiStepLR``
    can differ from the closed form in the last bits).
    """
    for group in state.optimizer.param_groups:
        group["betas"], group["weight_decay"] = config.optim.betas, config.optim.weight_decay
    schedule = {"lr": config.optim.lr, **config_to_dict(config)["scheduler"]}
    if schedule == {"lr": saved["optim"]["lr"], **saved["scheduler"]}:
        return
    scheduler = state.scheduler
    scheduler.milestones = Counter(config.scheduler.milestones)
    scheduler.gamma = config.scheduler.gamma
    passed = sum(1 for milestone in config.scheduler.milestones if milestone <= scheduler.last_epoch)
    rate = config.optim.lr * config.scheduler.gamma**passed
    scheduler.base_lrs = [config.optim.lr for _ in state.optimizer.param_groups]
    for group in state.optimizer.param_groups:
        group["initial_lr"], group["lr"] = config.optim.lr, rate
    scheduler._last_lr = [rate for _ in state.optimizer.param_groups]  # what get_last_lr() reports


def _prepare_for_training(model: nn.Module, config: TrainConfig, context: DistContext) -> nn.Module:
    """The module the forward pass goes through: DDP-wrapped and/or compiled as configured."""
    model.train()
    wrapped: nn.Module = model
    if context.enabled:
        device_ids = [context.device.index] if context.device.type == "cuda" else None
        wrapped = DistributedDataParallel(model, device_ids=device_ids)
    if config.runtime.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _rng_state() -> dict[str, Any]:
    """This process's generator states as tensors and plain values."""
    version, keys, gauss = random.getstate()
    kind, np_keys, pos, has_gauss, cached = np.random.get_state()
    return {
        "python": [version, list(keys), gauss],
        "numpy": [kind, torch.from_numpy(np_keys.astype(np.int64)), pos, has_gauss, cached],
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
    }


def _set_rng_state(saved: dict[str, Any]) -> None:
    version, keys, gauss = saved["python"]
    random.setstate((version, tuple(keys), gauss))
    kind, np_keys, pos, has_gauss, cached = saved["numpy"]
    np.random.set_state((kind, np_keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(saved["torch"])
    if saved["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])
