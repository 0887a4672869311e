"""f-grams: counting the most frequent n-grams (the paper's Algorithm 3) and matching them.

* :mod:`.hashindex` - an exact open-addressing hash map (uint64 key -> row) in numpy and torch;
* :mod:`.counting`  - Apriori counting, one pass per n, parallel and memory-bounded;
* :mod:`.vocab`     - the f-gram vocabulary file (safetensors) and its validation;
* :mod:`.matching`  - longest f-gram ending at every position (numpy and torch);
* :mod:`.tagging`   - pre-tagging a token directory into an aligned sidecar.
"""
