"""The yardstick for start-up time: the smallest useful click application."""

import click


@click.group()
def cli() -> None:
    """A minimal application."""


@cli.command()
def hello() -> None:
    """Say hello."""
    click.echo("hello")


if __name__ == "__main__":
    cli()
