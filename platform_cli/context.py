"""What every command gets: where the state lives, the config, and output settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from platform_cli.config import Config, load_config
from platform_cli.state.db import State, open_state


@dataclass
class AppContext:
    data_dir: Path
    config_path: Path | None = None
    json: bool = False
    verbose: int = 0
    _states: list[State] = field(default_factory=list)

    @cached_property
    def config(self) -> Config:
        return load_config(self.data_dir, self.config_path)

    @cached_property
    def state(self) -> State:
        state = open_state(self.data_dir)
        self._states.append(state)
        return state

    def close(self) -> None:
        for state in self._states:
            state.close()
