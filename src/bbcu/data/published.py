"""The published numbers of Xia et al. (ICLR 2023) as data (docs/published.md), plus the scores of the
reference restorers people run beside binary networks (RRDB, from ESRGAN's authors), which have no
place in the BBCU paper's cost tables.

Evaluation prints them beside our own scores, the plots draw them and the cost-accounting tests check
our OPs/Params against them, so they live in one typed place instead of being re-typed per consumer.
Rows are keyed by registry names (``bbcu-l``, ``dncnn-bbcu``, ...); ``ROW_LABELS`` gives the paper's
row titles. Every number is typed exactly as the paper lists it; ``tests/test_eval.py`` re-parses
docs/published.md and checks each one, so a typo cannot hide here.
"""

from __future__ import annotations

Score = tuple[float, float | None]
"""(PSNR in dB, SSIM or None where the paper gives PSNR only)."""
Cost = tuple[float, float]
"""(OPs in G for a 320x180 LQ input, Params in K)."""

PUBLISHED_DATASETS = {
    "sr": ("Set5", "Set14", "B100", "Urban100", "Manga109"),
    "denoise": ("CBSD68", "Kodak24", "Urban100"),
    "jpeg": ("LIVE1", "Classic5"),
}
_BINARY_BASELINES = {
    "bnn": "BNN",
    "bireal": "Bi-Real",
    "irnet": "IRNet",
    "btm": "BTM",
    "reactnet": "ReActNet",
}
ROW_LABELS: dict[str, dict[str, str]] = {
    "sr": {
        "srresnet": "SRResNet",
        "srresnet-lite": "SRResNet-Lite",
        "bicubic": "Bicubic",
        **_BINARY_BASELINES,
        "bbcu-m": "BBCU-M",
        "bbcu-l": "BBCU-L",
        "rrdbnet": "RRDB (ESRGAN, PSNR)",
    },
    "denoise": {
        "dncnn": "DnCNN",
        "dncnn-lite": "DnCNN-Lite",
        **{f"dncnn-{name}": label for name, label in _BINARY_BASELINES.items()},
        "dncnn-bbcu": "BBCU",
    },
    "jpeg": {
        "dncnn3": "DnCNN-3",
        "dncnn3-lite": "DnCNN-3-Lite",
        **{f"dncnn3-{name}": label for name, label in _BINARY_BASELINES.items()},
        "dncnn3-bbcu": "BBCU",
    },
}
"""Paper row title of each published model, per task, in the paper's row order."""

# SR: per scale, per model, (PSNR, SSIM) on Set5 | Set14 | B100 | Urban100 | Manga109.
_SR_SCORES: dict[int, dict[str, tuple[Score, ...]]] = {
    2: {
        "srresnet": ((38.00, 0.9605), (33.59, 0.9171), (32.19, 0.8997), (32.11, 0.9282), (38.56, 0.9770)),
        "srresnet-lite": (
            (37.21, 0.9578),
            (32.86, 0.9113),
            (31.67, 0.8936),
            (30.48, 0.9109),
            (36.70, 0.9722),
        ),
        "bicubic": ((33.97, 0.9330), (30.55, 0.8750), (29.73, 0.8494), (27.07, 0.8456), (31.24, 0.9383)),
        "bnn": ((32.25, 0.9118), (29.25, 0.8406), (28.68, 0.8104), (25.96, 0.8088), (29.16, 0.9127)),
        "bireal": ((32.32, 0.9123), (29.47, 0.8424), (28.74, 0.8111), (26.35, 0.8161), (29.64, 0.9167)),
        "irnet": ((37.27, 0.9579), (32.92, 0.9115), (31.76, 0.8941), (30.63, 0.9122), (36.77, 0.9724)),
        "btm": ((37.22, 0.9575), (32.93, 0.9118), (31.77, 0.8945), (30.79, 0.9146), (36.76, 0.9724)),
        "reactnet": ((37.26, 0.9579), (32.97, 0.9124), (31.81, 0.8954), (30.85, 0.9156), (36.92, 0.9728)),
        "bbcu-m": ((37.44, 0.9584), (33.04, 0.9127), (31.81, 0.8946), (30.84, 0.9149), (37.20, 0.9738)),
        "bbcu-l": ((37.58, 0.9590), (33.18, 0.9143), (31.91, 0.8962), (31.12, 0.9179), (37.50, 0.9746)),
    },
    4: {
        "srresnet": ((32.16, 0.8951), (28.60, 0.7822), (27.58, 0.7364), (26.11, 0.7870), (30.46, 0.9089)),
        "srresnet-lite": (
            (31.40, 0.8843),
            (28.11, 0.7692),
            (27.26, 0.7243),
            (25.19, 0.7544),
            (28.92, 0.8863),
        ),
        "bicubic": ((28.63, 0.8128), (26.21, 0.7087), (26.04, 0.6719), (23.24, 0.6114), (25.07, 0.7904)),
        "bnn": ((27.56, 0.7896), (25.51, 0.6820), (25.54, 0.6466), (22.68, 0.6352), (24.19, 0.7670)),
        "bireal": ((27.75, 0.7935), (25.79, 0.6879), (25.59, 0.6478), (22.91, 0.6450), (24.57, 0.7752)),
        "irnet": ((31.38, 0.8835), (28.08, 0.7679), (27.24, 0.7227), (25.21, 0.7536), (28.97, 0.8863)),
        "btm": ((31.43, 0.8850), (28.16, 0.7706), (27.29, 0.7256), (25.34, 0.7605), (29.19, 0.8912)),
        "reactnet": ((31.54, 0.8859), (28.19, 0.7705), (27.31, 0.7252), (25.35, 0.7603), (29.25, 0.8912)),
        "bbcu-m": ((31.54, 0.8862), (28.20, 0.7718), (27.31, 0.7263), (25.35, 0.7602), (29.22, 0.8918)),
        "bbcu-l": ((31.79, 0.8905), (28.38, 0.7762), (27.41, 0.7303), (25.62, 0.7696), (29.69, 0.8992)),
        # Not in Xia et al.: ESRGAN's PSNR-oriented RRDB_PSNR_x4 (the GAN model has no PSNR target).
        "rrdbnet": ((32.73, 0.9011), (28.99, 0.7917), (27.85, 0.7455), (27.03, 0.8153), (31.66, 0.9196)),
    },
}

# Colour denoising: per model, per dataset (CBSD68 | Kodak24 | Urban100), PSNR at sigma 15 / 25 / 50.
_DENOISE_SIGMAS = (15, 25, 50)
_DENOISE_PSNR: dict[str, tuple[tuple[float, ...], ...]] = {
    "dncnn": ((33.90, 31.24, 27.95), (34.60, 32.14, 28.95), (32.98, 30.81, 27.59)),
    "dncnn-lite": ((32.26, 29.64, 26.49), (32.73, 30.25, 27.22), (30.97, 28.46, 25.21)),
    "dncnn-bnn": ((26.90, 22.67, 16.41), (27.12, 22.58, 16.25), (26.67, 22.67, 16.54)),
    "dncnn-bireal": ((30.73, 28.72, 25.63), (30.97, 29.17, 26.11), (30.18, 28.18, 25.11)),
    "dncnn-irnet": ((31.37, 29.01, 26.75), (31.61, 29.54, 27.48), (30.57, 28.35, 26.00)),
    "dncnn-btm": ((32.25, 29.91, 26.79), (32.75, 30.64, 27.62), (30.99, 29.05, 25.86)),
    "dncnn-reactnet": ((32.26, 29.95, 26.93), (32.78, 30.65, 27.70), (31.27, 29.20, 26.01)),
    "dncnn-bbcu": ((33.08, 30.56, 27.33), (33.66, 31.28, 28.15), (32.27, 29.96, 26.61)),
}

# JPEG (grey): per model, per dataset (LIVE1 | Classic5), (PSNR, SSIM) at quality 10 / 20 / 30 / 40.
_JPEG_QUALITIES = (10, 20, 30, 40)
_JPEG_SCORES: dict[str, tuple[tuple[Score, ...], ...]] = {
    "dncnn3": (
        ((29.19, 0.8123), (31.59, 0.8802), (32.98, 0.9090), (33.96, 0.9247)),
        ((29.40, 0.8026), (31.63, 0.8610), (32.91, 0.8861), (33.77, 0.9003)),
    ),
    "dncnn3-lite": (
        ((28.90, 0.8061), (31.27, 0.8746), (32.62, 0.9029), (33.52, 0.9179)),
        ((29.80, 0.8000), (32.09, 0.8611), (33.39, 0.8868), (34.25, 0.9011)),
    ),
    "dncnn3-bnn": (
        ((28.48, 0.7925), (30.82, 0.8661), (32.19, 0.8965), (33.12, 0.9128)),
        ((29.41, 0.7879), (31.71, 0.8537), (33.04, 0.8817), (33.89, 0.8964)),
    ),
    "dncnn3-bireal": (
        ((28.67, 0.8011), (31.06, 0.8706), (32.42, 0.8998), (33.36, 0.9158)),
        ((29.54, 0.7934), (31.88, 0.8573), (33.21, 0.8845), (34.08, 0.8996)),
    ),
    "dncnn3-irnet": (
        ((28.73, 0.8019), (31.13, 0.8704), (32.49, 0.8993), (33.40, 0.9148)),
        ((29.63, 0.7947), (31.96, 0.8570), (33.28, 0.8836), (34.12, 0.8983)),
    ),
    "dncnn3-btm": (
        ((28.75, 0.8032), (31.18, 0.8725), (32.51, 0.9005), (33.38, 0.9153)),
        ((29.65, 0.7968), (32.02, 0.8597), (33.30, 0.8853), (34.11, 0.8991)),
    ),
    "dncnn3-reactnet": (
        ((28.81, 0.8025), (31.20, 0.8709), (32.52, 0.8981), (33.37, 0.9123)),
        ((29.70, 0.7956), (32.04, 0.8581), (33.32, 0.8831), (34.11, 0.8964)),
    ),
    "dncnn3-bbcu": (
        ((29.06, 0.8087), (31.43, 0.8780), (32.80, 0.9067), (33.75, 0.9221)),
        ((30.00, 0.8028), (32.27, 0.8645), (33.59, 0.8903), (34.45, 0.9044)),
    ),
}

# Cost columns exactly where the paper prints them, keyed by (task, scale); denoise/JPEG use scale 1.
_PRINTED_COSTS: dict[tuple[str, int], dict[str, Cost]] = {
    ("sr", 2): {
        "srresnet": (85.43, 1367),
        "srresnet-lite": (3.08, 49),
        "bnn": (18.55, 225),
        "bbcu-m": (1.83, 46),
        "bbcu-l": (18.55, 225),
    },
    ("sr", 4): {
        "srresnet": (146.14, 1515),
        "srresnet-lite": (5.39, 54),
        "bnn": (79.20, 372),
        "bbcu-m": (3.95, 51),
        "bbcu-l": (79.20, 372),
    },
    ("denoise", 1): {
        "dncnn": (38.42, 667),
        "dncnn-lite": (1.38, 24),
        "dncnn-bnn": (0.80, 24),
        "dncnn-bbcu": (0.80, 24),
    },
    ("jpeg", 1): {
        "dncnn3": (38.29, 665),
        "dncnn3-lite": (1.36, 24),
        "dncnn3-bnn": (0.66, 22),
        "dncnn3-bbcu": (0.66, 22),
    },
}
# Binary baselines binarize the body only, so rows printed without a cost share this model's.
_COST_SHARED_WITH = {"sr": "bbcu-l", "denoise": "dncnn-bbcu", "jpeg": "dncnn3-bbcu"}
_NOT_A_NETWORK = frozenset({"bicubic"})
_FROM_OTHER_PAPERS = frozenset({"rrdbnet"})
"""Reference restorers whose scores come from their own papers: the BBCU paper prints no cost for them."""


def _flatten_scores() -> dict[tuple[str, str, str, int], Score]:
    """One lookup table keyed by (task, model, dataset, setting) built from the three paper layouts."""
    scores: dict[tuple[str, str, str, int], Score] = {}
    for scale, rows in _SR_SCORES.items():
        for model, per_dataset in rows.items():
            for dataset, score in zip(PUBLISHED_DATASETS["sr"], per_dataset, strict=True):
                scores["sr", model, dataset, scale] = score
    for model, per_dataset in _DENOISE_PSNR.items():
        for dataset, psnrs in zip(PUBLISHED_DATASETS["denoise"], per_dataset, strict=True):
            for sigma, psnr in zip(_DENOISE_SIGMAS, psnrs, strict=True):
                scores["denoise", model, dataset, sigma] = (psnr, None)
    for model, per_dataset in _JPEG_SCORES.items():
        for dataset, per_quality in zip(PUBLISHED_DATASETS["jpeg"], per_dataset, strict=True):
            for quality, score in zip(_JPEG_QUALITIES, per_quality, strict=True):
                scores["jpeg", model, dataset, quality] = score
    return scores


_SCORES = _flatten_scores()


def published_settings(task: str) -> tuple[int, ...]:
    """Scales, sigmas or qualities the paper reports for ``task`` (x3 SR is not in the paper)."""
    return tuple(sorted({setting for (t, _, _, setting) in _SCORES if t == task}))


def published_score(model: str, task: str, dataset: str, setting: int) -> Score | None:
    """Published (PSNR, SSIM) of a registry model, or None where the paper has no such cell.

    Args:
        model: Registry name, e.g. ``"bbcu-l"`` or ``"dncnn-bbcu"``.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``.
        dataset: Test set name as in the paper, e.g. ``"B100"``.
        setting: Scale (SR), noise sigma (denoise) or JPEG quality.

    Returns:
        ``(psnr, ssim)``; ``ssim`` is None for denoising, where the paper gives PSNR only.
    """
    return _SCORES.get((task, model, dataset, int(setting)))


def published_cost(model: str, task: str, scale: int = 1) -> Cost | None:
    """Published (OPs in G, Params in K) of a registry model, or None where the paper implies none.

    Binary baselines printed without a cost column share BBCU-L's (SR) or binary DnCNN's cost, as the
    paper states; bicubic is not a network and has no cost, nor have reference restorers from other
    papers (RRDB).

    Args:
        model: Registry name.
        task: ``"sr"``, ``"denoise"`` or ``"jpeg"``.
        scale: SR scale; ignored for denoising and JPEG, whose networks do not resize.
    """
    key = (task, int(scale) if task == "sr" else 1)
    printed = _PRINTED_COSTS.get(key)
    if (
        printed is None
        or model in _NOT_A_NETWORK | _FROM_OTHER_PAPERS
        or model not in ROW_LABELS.get(task, {})
    ):
        return None
    return printed.get(model, printed[_COST_SHARED_WITH[task]])
