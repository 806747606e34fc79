"""What every command gets: where the state lives, the config, and output settings."""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from platform_cli.config import Config, load_config
from platform_cli.errors import PlatformError
from platform_cli.state.db import State, open_state

CONFIG_SECTIONS = ("chain", "consensus", "network", "p2p", "runtime", "weights")
"""The tables of ``platform.toml``; each is checked by the component that owns it."""


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

    def validate_config(self) -> None:
        """Load the config and check every table, whether or not the command reads it.

        A config named with ``--config`` that is missing, malformed or mistyped is an
        error even for commands that never look at it: the operator meant it to apply.
        """
        config = self.config
        unknown = sorted(set(config.raw) - set(CONFIG_SECTIONS))
        if unknown:
            raise PlatformError(
                f"{config.path}: [{unknown[0]}] is not a known table (known: {', '.join(CONFIG_SECTIONS)})"
            )
        from platform_cli.chain.settings import chain_settings, weight_settings
        from platform_cli.consensus.settings import consensus_settings
        from platform_cli.evaluation import default_jobs
        from platform_cli.p2p.config import load_settings

        chain_settings(config, self.data_dir)
        weight_settings(config)
        load_settings(config)
        default_jobs(config)
        consensus_settings(config)

    def serving(self) -> None:
        """A long-running service logs its warnings even without -v: nobody reruns it with -v."""
        if not self.verbose:
            import logging

            logging.getLogger().setLevel(logging.WARNING)

    def close(self) -> None:
        for state in self._states:
            state.close()
