"""The parameter server: tables sharded over processes, served over TCP (ps-lite style).

Modules, one concept each:

* ``routing``  — which shard owns an id (a stable hash of the id, never of the worker
  count) and splitting a batch of ids by shard;
* ``protocol`` — the message vocabulary and its wire format (a JSON header frame + raw
  numpy frames, zero-copy), the version handshake and the size limits;
* ``shard``    — one shard's state and operations (pull with admission, push into the
  in-table optimizers, evict, stats, checkpoint / restore with resharding, delta export);
  pure of networking;
* ``server``   — the zmq loop that serves a :class:`~plinth.sparse.ps.shard.Shard`;
* ``client``   — the worker side: :class:`~plinth.sparse.ps.client.PSClient` (connections,
  parallel requests, bounded pushes in flight) and
  :class:`~plinth.sparse.ps.client.RemoteTable`, a ``TableLike`` the trainer uses exactly
  like a local :class:`~plinth.sparse.table.EmbeddingTable`.

``python -m plinth.sparse.server`` runs one shard as a platform workload (see that module).
"""
