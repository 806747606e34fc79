"""The libp2p adapter: the node host, admission of gossip, the SQLite bridge, DHT, sync.

Light modules (``store``, ``outgoing``, ``client``, ``config``, ``records``, ``admission``)
import no libp2p and serve commands and other components; ``node``, ``dht``,
``control`` and ``keys`` (inside functions) run on py-libp2p and trio.
"""
