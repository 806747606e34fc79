"""The node's SQLite state: one database shared by every command and the running node."""

from platform_cli.state.db import State, open_state, write_transaction

__all__ = ["State", "open_state", "write_transaction"]
