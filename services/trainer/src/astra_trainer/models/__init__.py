"""Base models for the trainer: the default SmolLM2 policy converted from its GGUF, or a local
Hugging Face model folder; and the tool-capable chat templates installed on SmolLM2."""

from astra_trainer.models.chat_template import (
    CHAT_TEMPLATE,
    CHAT_TEMPLATE_VERSION,
    RESPONSE_TEMPLATE,
    TRAINING_CHAT_TEMPLATE,
)
from astra_trainer.models.errors import ModelStoreError
from astra_trainer.models.store import (
    DEFAULT_MODEL,
    MANIFEST_NAME,
    ModelManifest,
    ModelStore,
    validate_model_folder,
    verify_converted,
)

__all__ = [
    "CHAT_TEMPLATE",
    "CHAT_TEMPLATE_VERSION",
    "DEFAULT_MODEL",
    "MANIFEST_NAME",
    "RESPONSE_TEMPLATE",
    "TRAINING_CHAT_TEMPLATE",
    "ModelManifest",
    "ModelStore",
    "ModelStoreError",
    "validate_model_folder",
    "verify_converted",
]
