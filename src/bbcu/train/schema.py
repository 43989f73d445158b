"""The training recipe schema: every key a ``bbcu train`` YAML file may hold, its type, bounds and default.

These pydantic models ARE the schema: ``bbcu.train.config`` validates a merged recipe against them, types
``--set`` overrides by their annotations and lists a section's keys when one is misspelt, so adding a
field here is the whole job of adding an option. A field without a default is required. Types are strict
(``"8"`` is not 8, ``true`` is not 1) except that an integer is a valid number and a YAML list a valid
pair. docs/training.md explains each key.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from bbcu.archs.registry import model_entry
from bbcu.core.constants import Task
from bbcu.core.errors import ModelNotFoundError

Positive = Annotated[int, Field(gt=0)]
FloatPair = Annotated[tuple[float, float], Field(strict=False)]  # YAML has lists, not tuples
IntPair = Annotated[tuple[int, int], Field(strict=False)]


class Section(BaseModel):
    """A mapping of the recipe: no unknown keys, strict types, read-only once validated."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class ModelConfig(Section):
    """Which network to train.

    Attributes:
        name: Registry name (``bbcu list`` / ``bbcu.list_models()``), e.g. ``bbcu-l``.
        scale: Upscaling factor; SR models receive it as ``scale=``, other tasks must leave it at 1.
        kwargs: Extra keyword arguments of the model factory (e.g. ``{k: 130, channels: 64}``).
        init: Weights whose tensors start a fresh run wherever name and shape match, the rest keeping
            their random initialisation (a x3 model can start from a trained x2 body, as EDSR-style
            recipes do): a shipped model name such as ``bbcu-l-x2``, or a weights file, relative to the
            recipe file that names it (``bbcu.train.config.init_weights_path``). Ignored when resuming.
    """

    name: str
    scale: Positive = 1
    kwargs: dict[str, Any] = Field(default_factory=dict)
    init: str | None = None

    @field_validator("name")
    @classmethod
    def _registered(cls, name: str) -> str:
        try:
            model_entry(name)
        except ModelNotFoundError as err:
            raise ValueError(str(err)) from err
        return name


class HRFolder(Section):
    """One folder of high-quality training images, relative to the data root.

    Attributes:
        dir: Folder of images (e.g. ``DIV2K/HR``, ``T91``).
        names: Optional text file (relative to the data root) listing the file names to use, one per
            line; this is how the BSD200 split of CBSD432 is selected.
    """

    dir: str
    names: str | None = None


class DataConfig(Section):
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

    train: Annotated[list[HRFolder], Field(min_length=1)]
    patch: Positive
    sigma_range: FloatPair = (0.0, 75.0)
    quality_range: IntPair = (0, 50)
    grey: bool = False
    repeat: Positive = 1
    num_workers: Annotated[int, Field(ge=0)] = 0


class OptimConfig(Section):
    """Adam, the only optimizer of the published recipes.

    Attributes:
        lr: Initial learning rate.
        betas: Adam's moment decay rates.
        weight_decay: L2 penalty (0 in every published recipe).
    """

    lr: Annotated[float, Field(gt=0)]
    betas: FloatPair = (0.9, 0.999)
    weight_decay: Annotated[float, Field(ge=0)] = 0.0


class SchedulerConfig(Section):
    """MultiStepLR: multiply the learning rate by ``gamma`` at each milestone iteration.

    Attributes:
        milestones: Iterations at which the learning rate drops.
        gamma: Factor applied at each milestone.
    """

    milestones: list[int] = Field(default_factory=list)
    gamma: float = 0.5


class TrainLoopConfig(Section):
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

    iterations: Positive
    batch_size: Positive
    seed: int = 0
    loss: Literal["l1"] = "l1"
    ema_decay: Annotated[float, Field(gt=0, lt=1)] | None = None
    grad_clip: Annotated[float, Field(gt=0)] | None = None
    checkpoint_every: Positive = 5000
    log_every: Positive = 100


class ValConfig(Section):
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

    every: Annotated[int, Field(ge=0)] = 0
    sets: list[str] = Field(default_factory=list)
    sigma: int = 25
    quality: int = 20
    tile: Positive | None = None

    @model_validator(mode="after")
    def _sets_when_on(self) -> ValConfig:
        if self.every and not self.sets:
            raise ValueError("sets is empty: name at least one test set, or set every to 0")
        return self


class RuntimeConfig(Section):
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
    threads: Positive | None = None


class OutputConfig(Section):
    """Where the run lives and what it writes.

    Attributes:
        dir: Run directory (checkpoints, weights, logs); null = ``runs/<config file name>``.
        tensorboard: TensorBoard event files (needs the ``tensorboard`` package): ``auto`` writes them
            when the package is installed, ``true`` requires it, ``false`` never writes them.
        keep_checkpoints: How many of the newest checkpoints to keep on disk (2 by default, so that a
            checkpoint damaged on disk still leaves one to resume from).
    """

    dir: str | None = None
    tensorboard: Literal[True, False, "auto"] = "auto"
    keep_checkpoints: Positive = 2


class TrainConfig(Section):
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
    scheduler: SchedulerConfig = SchedulerConfig()
    val: ValConfig = ValConfig()
    runtime: RuntimeConfig = RuntimeConfig()
    output: OutputConfig = OutputConfig()
    description: str = ""

    @model_validator(mode="after")
    def _fits_the_model(self) -> TrainConfig:
        registered = model_entry(self.model.name).task
        if registered != self.task:
            raise ValueError(f"model {self.model.name!r} is a {registered!r} model but task is {self.task!r}")
        if self.task != "sr" and self.model.scale != 1:
            raise ValueError(f"model.scale must be 1 for task {self.task!r} (got {self.model.scale})")
        return self
