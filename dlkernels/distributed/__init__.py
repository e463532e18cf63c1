"""Scale out on Dask: random walks, their shards, and exact sharded search.

Needs the optional extra ``dask`` (``pip install "dlkernels[dask]"``). Dask is
imported when a function here is first called, never by ``import dlkernels``.
Every function takes ``client=``: a ``dask.distributed.Client`` connected to
any cluster (a ``LocalCluster``, dask-jobqueue, Kubernetes, ...), or None for
the client already current in this process.

.. autosummary::
   :toctree: generated/

   random_walks
   write_walks
   ShardedKDTree
   ShardedLSHIndex
"""

from dlkernels.distributed.kdtree import ShardedKDTree
from dlkernels.distributed.lsh import ShardedLSHIndex
from dlkernels.distributed.walks import random_walks, write_walks

__all__ = ["random_walks", "write_walks", "ShardedKDTree", "ShardedLSHIndex"]
