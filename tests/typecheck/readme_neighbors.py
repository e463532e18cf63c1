"""The README's nearest-neighbour examples (KDTree, LSHIndex), for ``mypy --strict``."""

import numpy as np
import numpy.typing as npt

from dlkernels.neighbors import KDTree, LSHIndex, split_csr

rng = np.random.default_rng(0)
X = rng.random((1_000, 3))
queries = rng.random((20, 3))

tree = KDTree(X)
dist, idx = tree.query(queries, k=10)
ids, offsets = tree.query_radius(queries, r=0.05)
per_query: list[npt.NDArray[np.int64]] = split_csr(ids, offsets)
new_ids: npt.NDArray[np.int64] = tree.add(rng.random((10, 3)))

emb = rng.standard_normal((2_000, 32)).astype(np.float32)
index = LSHIndex(32, metric="cosine", rng=0)
index.add(emb)
chosen = index.tune(emb[:50] + 0.1, k=5, target_recall=0.9)
lsh_dist, lsh_ids = index.query(emb[:10], k=5)
print(dist.shape, idx.shape, len(per_query), new_ids, lsh_dist.shape, lsh_ids.shape,
      chosen["n_probes"])
