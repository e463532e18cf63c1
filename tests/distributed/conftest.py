"""A two-process Dask cluster on loopback, shared by the tests of this folder."""

import pytest

pytest.importorskip("distributed")


@pytest.fixture(scope="session")
def new_cluster():
    """Makes a two-process loopback LocalCluster. Its scheduler's HTTP server takes a
    free port: on the default 8787, a cluster running elsewhere on the machine makes
    distributed warn (an error here) that the port is taken."""
    from distributed import LocalCluster

    def make():
        return LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                            dashboard_address=None,
                            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"})
    return make


@pytest.fixture(scope="session")
def cluster(new_cluster):
    with new_cluster() as cluster:
        yield cluster


@pytest.fixture
def client(cluster):
    from distributed import Client

    with Client(cluster) as client:
        yield client
