"""The README's graph, random-walk and embedding examples, for ``mypy --strict``."""

import os
import tempfile

import numpy as np
import numpy.typing as npt

from dlkernels.embed import SkipGram
from dlkernels.graph import Graph, Node2Vec, random_walks

rng = np.random.default_rng(0)
src, dst = rng.integers(0, 100, 500), rng.integers(0, 100, 500)
g = Graph.from_edges(src, dst, directed=False)
walks: npt.NDArray[np.int32] = random_walks(g, 20, 2, p=0.5, q=2.0, rng=0)

model = SkipGram(dim=16, window=5, n_negatives=5, epochs=1, rng=0).fit(walks)
vectors: npt.NDArray[np.float32] = model.vectors
ids, sims = model.most_similar(0, k=10)
with tempfile.TemporaryDirectory() as tmp:
    model.save_word2vec_format(os.path.join(tmp, "vectors.txt"))

node2vec = Node2Vec(dim=16, walk_length=20, walks_per_node=2, p=1, q=0.5, window=5, rng=0)
embedding: npt.NDArray[np.float32] = node2vec.fit(g).vectors
print(walks.shape, vectors.shape, ids, sims, embedding.shape)
