"""The chain: the bittensor SDK adapter and the embedded dev chain."""
