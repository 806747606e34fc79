"""Platform: a WASM-first, peer-to-peer validator network for Bittensor subnets."""

__version__ = "0.1.0"
