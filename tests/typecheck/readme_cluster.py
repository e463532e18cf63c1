"""The README's k-means examples, for ``mypy --strict``."""

import numpy as np
import numpy.typing as npt

from dlkernels.cluster import kmeans, kmeans_1d

rng = np.random.default_rng(0)
weights = rng.standard_normal(5_000)
res = kmeans_1d(weights, 16)
shared: npt.NDArray[np.float64] = res.centers[res.labels]
fast = kmeans_1d(weights, 16, method="lloyd", init="k-means++", rng=0)
X = rng.standard_normal((2_000, 8))
res_nd = kmeans(X, 32, rng=0)
inertia: float = res_nd.inertia
n_iter: int = res_nd.n_iter
print(shared.shape, fast.centers.shape, res_nd.centers.shape, res_nd.labels.shape, inertia, n_iter)
