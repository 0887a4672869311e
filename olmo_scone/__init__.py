"""olmo-scone: SCONE (Scalable, Contextualized, Offloaded N-gram Embedding) for AI2's OLMo.

The library, by job: :mod:`~olmo_scone.data` turns documents into OLMo memmap token files;
:mod:`~olmo_scone.fgrams` counts f-grams (on this machine or on Ray), matches them and tags
training data; :mod:`~olmo_scone.config` and :mod:`~olmo_scone.model` define ``SconeOLMo``;
:mod:`~olmo_scone.train` trains it with DeepSpeed ZeRO; :mod:`~olmo_scone.export` runs ``A_fgram``
once over every f-gram; :mod:`~olmo_scone.serving` serves the result from host RAM or NVMe.
Experiments built on it live in :mod:`~olmo_scone.recipes`, benchmarks in :mod:`~olmo_scone.bench`.
"""

__version__ = "0.1.0"
