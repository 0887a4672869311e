"""Hugging Face ``transformers`` classes for served SCONE models and baselines (modeling.py), and
the files that make an exported folder open with ``AutoModelForCausalLM.from_pretrained``
(folder.py).

Importing this package registers the model type with ``AutoConfig`` / ``AutoModelForCausalLM``, so
``from_pretrained(DIR)`` needs no ``trust_remote_code`` and runs none of the folder's code."""

from .modeling import SconeOLMoConfig, SconeOLMoForCausalLM, register_auto_classes

register_auto_classes()

__all__ = ["SconeOLMoConfig", "SconeOLMoForCausalLM"]
