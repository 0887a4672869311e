"""Counting f-grams: the S most frequent n-grams, 2 <= n <= K (the paper's Algorithm 3).

One pass per n. Pass 2 counts every token pair that holds neither EOS nor pad. Pass n+1 counts an
(n+1)-gram only if its n-prefix and n-suffix both survived pass n, and a pass keeps only n-grams
seen at least ``min_count`` times. Because counts can only fall as n-grams grow, this pruning loses
nothing: the survivors are exactly the n-grams with count >= ``min_count`` (the tests check this
against brute force).

Encoding. A surviving n-gram gets an id (its index in pass n's sorted keys), and an (n+1)-gram is
the 64-bit key ``id(prefix) * V + last_token``: exact, no hashing.

Work. Each pass is a map and a reduce over tasks that keep no state (``tasks.py``): the corpus is
cut into chunks (with K-1 tokens of left context); a counting task counts one chunk and splits its
counts by a hash of the key into P partitions; a merge task sums one partition and keeps its
survivors; one task publishes the pass's survivors as a hash index that the next pass's tasks read.
Ranking all lengths together is partitioned too (``ranking.py``). ``plan.py`` sizes chunks and
partitions to the memory budget; ``run.py`` drives it all through an executor: worker processes on
this machine (``local.py``, the default) or Ray tasks on a cluster (``ray_executor.py``). Both give
the same bytes.

Ranking and ties: by count (descending), then length (ascending), then token ids
(lexicographically ascending). With this order every prefix and suffix of a chosen f-gram ranks
before it, so the top S are closed under prefixes and suffixes.
"""

from .plan import CountSettings, TokenSource
from .ranking import rank_fgrams
from .run import FgramCounts, count_fgrams

__all__ = ["CountSettings", "TokenSource", "FgramCounts", "count_fgrams", "rank_fgrams"]
