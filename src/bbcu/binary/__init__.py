"""The 1-bit core: sign estimators, weight binarizers, the binary convolution and the binary units."""

from bbcu.binary.conv import WEIGHT_BINARIZERS, BinaryConv2d
from bbcu.binary.layers import LearnableBias, RPReLU
from bbcu.binary.sign import ede_schedule, sign, sign_approx, sign_ede, sign_ste
from bbcu.binary.units import (
    BBCUV1,
    BBCUV2,
    BBCUV3,
    BBCUV4,
    UNITS,
    BBCUHead,
    BBCUTail,
    BBCUUpsample,
    BiRealUnit,
    BNNUnit,
    BTMUnit,
    IRNetUnit,
    ReActNetUnit,
    set_training_progress,
)
from bbcu.binary.weights import binarize_weight_libra, binarize_weight_scaled, binarize_weight_sign

__all__ = [
    "BBCUV1",
    "BBCUV2",
    "BBCUV3",
    "BBCUV4",
    "UNITS",
    "WEIGHT_BINARIZERS",
    "BBCUHead",
    "BBCUTail",
    "BBCUUpsample",
    "BNNUnit",
    "BTMUnit",
    "BiRealUnit",
    "BinaryConv2d",
    "IRNetUnit",
    "LearnableBias",
    "RPReLU",
    "ReActNetUnit",
    "binarize_weight_libra",
    "binarize_weight_scaled",
    "binarize_weight_sign",
    "ede_schedule",
    "set_training_progress",
    "sign",
    "sign_approx",
    "sign_ede",
    "sign_ste",
]
