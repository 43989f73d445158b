"""The training recipe schema: every key a ``bbcu train`` YAML file may hold, its type and its default.

The dataclasses below ARE the schema: ``bbcu.train.config`` reads their type hints to validate a YAML
file, to type ``--set`` overrides and to report unknown keys, so adding a field here is the whole job
of adding an option. A field without a default is required. docs/training.md explains each key.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Task = Literal["sr", "denoise", "jpeg"]


@dataclass(frozen=True)
class ModelConfig:
    """Which network to train.

    Attributes:
        name: Registry name (``bbcu list`` / ``bbcu.list_models()``), e.g. ``bbcu-l``.
        scale: Upscaling factor; SR models receive it as ``scale=``, other tasks must leave it at 1.
        kwargs: Extra keyword arguments of the model factory (e.g. ``{k: 130, channels: 64}``).
        init: A weights file (path relative to the working directory) whose tensors start a fresh run
            wherever name and shape match, the rest keeping their random initialisation: a x3 model can
            start from a trained x2 body, as EDSR-style recipes do. Ignored when resuming.
    """

    name: str
    scale: int = 1
    kwargs: dict[str, Any] = field(default_factory=dict)
    init: str | None = None


@dataclass(frozen=True)
class HRFolder:
    """One folder of high-quality training images, relative to the data root.

    Attributes:
        dir: Folder of images (e.g. ``DIV2K/HR``, ``T91``).
        names: Optional text file (relative to the data root) listing the file names to use, one per
            line; this is how the BSD200 split of CBSD432 is selected.
    """

    dir: str
    names: str | None = None


@dataclass(frozen=True)
class DataConfig:
    """Training patches.

    Attributes:
        train: HR folders whose images are cut into training patches.
        patch: Patch side: the LR patch for SR (the HR patch is ``patch * scale``), the patch for
            denoising and JPEG.
        sigma_range: Blind denoising: noise level drawn uniformly from this range (0..255 scale).
        quality_range: Blind JPEG: quality drawn uniformly from these integers (inclusive).
        grey: Denoising on grey images instead of RGB.
        repeat: Visits of each image per epoch; only the epoch length changes (fewer DataLoader restarts
            on small sets), not what a given iteration trains on in distribution.
        num_workers: DataLoader worker processes (0 = load in the training process).
    """

    train: list[HRFolder]
    patch: int
    sigma_range: tuple[float, float] = (0.0, 75.0)
    quality_range: tuple[int, int] = (0, 50)
    grey: bool = False
    repeat: int = 1
    num_workers: int = 0


@dataclass(frozen=True)
class OptimConfig:
    """Adam, the only optimizer of the published recipes.

    Attributes:
        lr: Initial learning rate.
        betas: Adam's moment decay rates.
        weight_decay: L2 penalty (0 in every published recipe).
    """

    lr: float
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0


@dataclass(frozen=True)
class SchedulerConfig:
    """MultiStepLR: multiply the learning rate by ``gamma`` at each milestone iteration.

    Attributes:
        milestones: Iterations at which the learning rate drops.
        gamma: Factor applied at each milestone.
    """

    milestones: list[int] = field(default_factory=list)
    gamma: float = 0.5


@dataclass(frozen=True)
class TrainLoopConfig:
    """How long and how the optimisation runs.

    Attributes:
        iterations: Total optimizer steps.
        batch_size: Patches per step on each process (DDP multiplies it by the number of processes).
        seed: Seeds the model initialisation and the order and content of every batch.
        loss: Pixel loss between the model output and the ground truth (``l1`` as published).
        ema_decay: Exponential moving average of the weights (e.g. 0.999), or null for none. When on,
            the EMA model is the one validated and saved as best/last weights.
        grad_clip: Clip the global gradient norm to this value, or null for no clipping.
        checkpoint_every: Iterations between checkpoints (a checkpoint is also written at the end).
        log_every: Iterations between rows of the training log.
    """

    iterations: int
    batch_size: int
    seed: int = 0
    loss: Literal["l1"] = "l1"
    ema_decay: float | None = None
    grad_clip: float | None = None
    checkpoint_every: int = 5000
    log_every: int = 100


@dataclass(frozen=True)
class ValConfig:
    """Periodic validation with exactly the metrics of ``bbcu eval``.

    Attributes:
        every: Iterations between validations (also run at the start of a fresh run and at the end);
            0 (the default) turns validation off.
        sets: Named test sets (``Set5``, ``CBSD68``, ``LIVE1``...); the first one's PSNR selects the
            best weights.
        sigma: Denoising: the noise level of the validation images.
        quality: JPEG: the quality of the validation images.
        tile: Restore validation images in tiles of this size (null = automatic, as ``bbcu eval``).
    """

    every: int = 0
    sets: list[str] = field(default_factory=list)
    sigma: int = 25
    quality: int = 20
    tile: int | None = None


@dataclass(frozen=True)
class RuntimeConfig:
    """Where and how fast the computation runs; none of these change what is learned (bf16 aside).

    Attributes:
        device: ``cpu``, ``cuda`` or ``auto`` (cuda when available).
        channels_last: Keep activations in NHWC memory layout (about 2x faster convs on this CPU).
        bf16: Run the forward pass under bfloat16 autocast.
        compile: Wrap the model in ``torch.compile``.
        threads: torch intra-op threads (null = torch's default).
    """

    device: Literal["cpu", "cuda", "auto"] = "auto"
    channels_last: bool = False
    bf16: bool = False
    compile: bool = False
    threads: int | None = None


@dataclass(frozen=True)
class OutputConfig:
    """Where the run lives and what it writes.

    Attributes:
        dir: Run directory (checkpoints, weights, logs); null = ``runs/<config file name>``.
        tensorboard: TensorBoard event files (needs the ``tensorboard`` package): ``auto`` writes them
            when the package is installed, ``true`` requires it, ``false`` never writes them.
        keep_checkpoints: How many of the newest checkpoints to keep on disk (at least 2, so a
            checkpoint damaged on disk still leaves one to resume from).
    """

    dir: str | None = None
    tensorboard: bool | Literal["auto"] = "auto"
    keep_checkpoints: int = 2


@dataclass(frozen=True)
class TrainConfig:
    """A complete training recipe (the root of a ``configs/*.yml`` file).

    Attributes:
        task: ``sr``, ``denoise`` or ``jpeg``; must match the model's registered task.
        model: The network.
        data: The training patches.
        train: Loop length, batch, seed, loss, EMA, clipping, checkpoint interval.
        optim: Adam settings.
        scheduler: Learning-rate milestones.
        val: Periodic validation.
        runtime: Device and speed options.
        output: Run directory and logs.
        description: One line saying what the recipe is (and whether it is the published one).
    """

    task: Task
    model: ModelConfig
    data: DataConfig
    train: TrainLoopConfig
    optim: OptimConfig
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    val: ValConfig = field(default_factory=ValConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    output: OutputConfig = field(default_factory=OutputConfig)
    description: str = ""
