"""The embedded dev chain: the pallet's rules for what validators do, over one SQLite file.

``chain`` (the file, the clock, administration, extrinsics, reads), ``store`` (storage
kept by block), ``state`` (the chain as one block sees it, derived items included),
``epochs`` (the epoch scheduler and permits), ``rules`` (the weight calls), ``seed``
(genesis from a seed file) and ``substrate`` (the SDK's ``Substrate`` protocol on top).
"""
