"""olmo-scone: SCONE (Scalable, Contextualized, Offloaded N-gram Embedding) for AI2's OLMo.

The library is split by job: :mod:`olmo_scone.data` turns documents into OLMo memmap
token files, later modules count f-grams, define the model, train, export and serve.
"""

__version__ = "0.1.0"
