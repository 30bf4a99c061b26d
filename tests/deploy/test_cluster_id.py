import base64

from xbus.deploy.kafka import cluster_id


def test_cluster_ids_are_16_random_bytes_that_never_read_as_an_option() -> None:
    # One url-safe base64 id in 64 starts with "-"; the storage tool then takes it for a flag.
    ids = [cluster_id() for _ in range(5000)]
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)
    assert all(len(base64.urlsafe_b64decode(i + "==")) == 16 for i in ids)
