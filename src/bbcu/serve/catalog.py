"""The models the page offers: a whitelist built once, so a client can only ever name one of them.

A client sends a model *name*; it is looked up here and never used as a path (``bbcu.restore`` would
accept a weights path as a model name, which a web client must not reach). The catalogue holds the
non-learned ``bicubic`` at every SR scale, which needs no file and keeps the page useful on a bare
checkout, every shipped model of ``bbcu.zoo``, and every model of the models folders: ``$BBCU_MODELS``
(or the package's) and the one ``bbcu serve --models-dir`` names, whose official ESRGAN-family ``.pth``
checkpoints are recognised by layout (``bbcu.run.zoo.folder_models``). A folder's file is found when the
server starts and its path kept in the entry: no path ever comes from a request. Networks are loaded on
first use and kept.

A folder's DFDNet (with its dictionary) is offered as a ``face`` model only when an upload can be run
through it: the upload is a whole photo, whose faces dlib finds, aligns and gives landmarks to
(``bbcu.run.faces.FaceDetector``, the ``faces`` extra). Without that extra the face models are left out
and one warning says why.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from torch import nn

from bbcu.archs import create_model, model_entry
from bbcu.archs.registry import without_initialisation
from bbcu.core.constants import SR_SCALES
from bbcu.core.errors import MissingExtraError
from bbcu.metrics.complexity import count_cost
from bbcu.run import zoo
from bbcu.run.faces import FACES_EXTRA, FaceDetector, FaceRestorer, face_restorer
from bbcu.run.resolve import ResolvedModel, resolve_model
from bbcu.serve.limits import RequestError

logger = logging.getLogger(__name__)

BICUBIC = "bicubic"


@dataclass(frozen=True)
class ModelChoice:
    """One entry of the catalogue, with what the page shows about it.

    Attributes:
        name: What the client sends (a shipped name, or ``"bicubic"``).
        task: ``"sr"``, ``"denoise"``, ``"jpeg"`` or ``"face"``.
        scale: SR factor (1 for denoising, JPEG and faces).
        architecture: Registry name of the network.
        binary: Whether the network has binary convolutions.
        engines: Engines it can run on: ``"torch"``, plus ``"packed"`` when the packed engine is
            importable and supports the architecture.
        file_bytes: Size of its weights file (0 for bicubic, which has none).
        reference: The network without weights, used only to count OPs and Params.
        path: The file of a models-folder entry; None for bicubic and shipped models, found by name.
        dictionary: A face model's component dictionary (found with it in the folder), else None.
    """

    name: str
    task: str
    scale: int
    architecture: str
    binary: bool
    engines: tuple[str, ...]
    file_bytes: int
    reference: nn.Module = field(repr=False, compare=False)
    path: Path | None = None
    dictionary: Path | None = None

    def figures(self, width: int, height: int) -> tuple[float | None, float]:
        """G OPs and K Params of one pass over a ``width x height`` input (paper units, docs/protocols.md).

        A face model's OPs are None: they depend on the faces found, not on the image size.
        """
        if self.task == "face":
            return None, sum(p.numel() for p in self.reference.parameters()) / 1e3
        cost = count_cost(self.reference, (width, height))
        return cost.ops_g, cost.params_k

    def describe(self) -> dict[str, object]:
        """The JSON the page lists models with; cost at the paper's 320x180 input."""
        ops_g, params_k = self.figures(320, 180)
        return {
            "name": self.name,
            "task": self.task,
            "scale": self.scale,
            "architecture": self.architecture,
            "binary": self.binary,
            "engines": list(self.engines),
            "file_bytes": self.file_bytes,
            "ops_g_320x180": None if ops_g is None else round(ops_g, 3),
            "params_k": round(params_k, 2),
        }


class Catalog:
    """The whitelist of models, and the networks loaded from it so far.

    Attributes:
        choices: The entries on offer.
        detector: The face detector face models run with (None when none is offered).
    """

    def __init__(self, choices: list[ModelChoice], detector: FaceDetector | None = None) -> None:
        self.choices = choices
        self.detector = detector
        self._loaded: dict[tuple[str, int, str], ResolvedModel] = {}
        self._faces: dict[str, FaceRestorer] = {}

    @classmethod
    def discover(cls, models_dir: Path | None = None) -> Catalog:
        """Bicubic at every SR scale, every shipped model (``$BBCU_MODELS`` or ``models/``), then the
        other models of that folder and of ``models_dir`` (official checkpoints, face models when faces
        can be detected); a name already offered keeps its first entry."""
        choices = [_bicubic_choice(scale) for scale in SR_SCALES]
        choices += [_shipped_choice(name) for name in zoo.list_shipped()]
        offered: dict[str, Path | None] = {BICUBIC: None}
        offered.update((name, zoo.shipped_path(name)) for name in zoo.list_shipped())
        folders = [zoo.models_dir()] if zoo.models_dir().is_dir() else []
        for folder in dict.fromkeys([*folders, *([models_dir] if models_dir else [])]):
            for model in zoo.folder_models(folder):
                if model.name not in offered:
                    offered[model.name] = model.path
                    choices.append(_folder_choice(model))
                elif offered[model.name] != model.path:
                    logger.warning("skipping %s: a model named %s is already offered", model.path, model.name)
        detector = _face_detector([c.name for c in choices if c.task == "face"])
        return cls([c for c in choices if c.task != "face" or detector], detector)

    def choose(self, name: str, task: str, scale: int, engine: str) -> ModelChoice:
        """The entry a request names, checked against the task, scale and engine it asks for.

        Raises:
            RequestError: If no such model is offered or it cannot do what is asked.
        """
        named = [choice for choice in self.choices if choice.name == name]
        if not named:
            offered = ", ".join(sorted({choice.name for choice in self.choices}))
            raise RequestError(f"unknown model {name!r}; this server offers {offered}")
        fitting = [choice for choice in named if choice.task == task and choice.scale == scale]
        if not fitting:
            what = f"{task} x{scale}" if task == "sr" else task
            raise RequestError(f"model {name} does not do {what}")
        if engine not in fitting[0].engines:
            raise RequestError(f"model {name} cannot run on the {engine} engine here")
        return fitting[0]

    def faces(self, choice: ModelChoice) -> FaceRestorer:
        """The whole-photo restorer of face model ``choice``, loaded on first use (worker thread only)."""
        if choice.name not in self._faces:
            _, restorer = face_restorer(choice.path, choice.dictionary, model=choice.architecture)
            restorer.detector = self.detector
            self._faces[choice.name] = restorer
        return self._faces[choice.name]

    def network(self, choice: ModelChoice, engine: str) -> ResolvedModel:
        """The runnable network of ``choice`` on ``engine``, loaded on first use (worker thread only)."""
        key = (choice.name, choice.scale, engine)
        if key not in self._loaded:
            self._loaded[key] = resolve_model(
                choice.architecture if choice.path else choice.name,
                task=choice.task,
                scale=choice.scale,
                weights=choice.path,
                engine=engine,
            )
        return self._loaded[key]


def _bicubic_choice(scale: int) -> ModelChoice:
    return ModelChoice(
        BICUBIC, "sr", scale, BICUBIC, False, ("torch",), 0, create_model(BICUBIC, scale=scale)
    )


def _shipped_choice(name: str) -> ModelChoice:
    info = zoo.shipped_info(name)
    binary = model_entry(info.architecture).binary
    engines = ("torch", "packed") if _packed_engine_runs(info.architecture) else ("torch",)
    reference = create_model(info.architecture, **info.model_kwargs)
    return ModelChoice(
        name, info.task, info.scale, info.architecture, binary, engines, info.path.stat().st_size, reference
    )


def _folder_choice(model: zoo.ShippedModel) -> ModelChoice:
    """A models-folder file: its network is built only as shapes, for the cost (it may be 16.7 M weights)."""
    binary = model_entry(model.architecture).binary
    engines = ("torch", "packed") if _packed_engine_runs(model.architecture) else ("torch",)
    with without_initialisation(shapes_only=True):
        reference = create_model(model.architecture, **model.model_kwargs)
    return ModelChoice(
        model.name,
        model.task,
        model.scale,
        model.architecture,
        binary,
        engines,
        model.path.stat().st_size,
        reference,
        model.path,
        model.dictionary,
    )


def _face_detector(face_models: list[str]) -> FaceDetector | None:
    """dlib's detector when face models were found and it is installed; otherwise None, said once."""
    if not face_models:
        return None
    try:
        return FaceDetector()
    except MissingExtraError:
        logger.warning(
            "not offering the face model(s) %s: the page finds the faces of an upload with dlib and its "
            "face models, which are not installed (%s)",
            ", ".join(face_models),
            FACES_EXTRA,
        )
        return None


def _packed_engine_runs(architecture: str) -> bool:
    """Whether ``bbcu.engine`` imports (its compiled kernels are built) and can run ``architecture``."""
    try:
        import bbcu.engine  # noqa: F401  (fails when the compiled kernels are missing)
        from bbcu.formats.packed import SUPPORTED_ARCHITECTURES
    except ImportError:
        return False
    return architecture in SUPPORTED_ARCHITECTURES
