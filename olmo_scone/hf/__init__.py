"""Hugging Face ``transformers`` classes for served SCONE models and baselines (modeling.py), and
the files that make an exported folder open with ``AutoModelForCausalLM.from_pretrained``
(folder.py)."""

from .modeling import SconeOLMoConfig, SconeOLMoForCausalLM

__all__ = ["SconeOLMoConfig", "SconeOLMoForCausalLM"]
