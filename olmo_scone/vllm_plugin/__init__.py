"""Serving an exported SCONE model with vLLM.

An export writes its main model in GPT-2's layout into ``DIR/vllm`` (:mod:`.folder`); vLLM serves
a baseline's folder with its own ``GPT2LMHeadModel`` and a SCONE folder with
:class:`~olmo_scone.vllm_plugin.model.SconeGPT2LMHeadModel` (:mod:`.model`): vLLM's GPT-2 whose
input embeddings at matched positions are the f-gram table's rows, looked up on the host. vLLM
finds :func:`register` through the ``vllm.general_plugins`` entry point (pyproject.toml), in every
process it starts, so ``vllm serve DIR/vllm`` needs no flag. Only :mod:`.model` imports vLLM.
"""

#: the architecture name of a SCONE folder's config.json, under which the plugin registers its model
ARCHITECTURE = "SconeGPT2LMHeadModel"


def register() -> None:
    """vLLM's general-plugin hook: make :data:`ARCHITECTURE` known to vLLM's model registry."""
    from vllm import ModelRegistry

    if ARCHITECTURE not in ModelRegistry.get_supported_archs():
        ModelRegistry.register_model(
            ARCHITECTURE, "olmo_scone.vllm_plugin.model:SconeGPT2LMHeadModel"
        )
