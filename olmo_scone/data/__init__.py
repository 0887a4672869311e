"""Documents in, OLMo memmap token files out (see :mod:`olmo_scone.data.prepare`)."""
