"""``platform monitor``: the Textual TUI watching a node's (or a devnet's) state."""
