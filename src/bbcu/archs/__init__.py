"""Networks of the published tables, registered by name (importing this package registers them all)."""

from bbcu.archs import bbcu_rrdb, bicubic, dfdnet, dncnn, identity, rrdbnet, srresnet  # noqa: F401  (imported to register their models)
from bbcu.archs.registry import ModelEntry, create_model, list_models, model_entry, register_model

__all__ = ["ModelEntry", "create_model", "list_models", "model_entry", "register_model"]
