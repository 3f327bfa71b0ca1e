"""The ``vosseg`` command line. Each command parses options, delegates to the library and prints.

One module per group of commands, registered on one Typer app in this order: ``segment``
(segment, batch), ``results`` (overlay, benchmark, evaluate, ablation), ``train`` (train,
train-primary, train-target-features), ``info``; ``common`` holds what they share.
"""

from importlib import import_module

from vossegcli.cli.common import app

for _group in ("segment", "results", "train", "info"):
    import_module(f"vossegcli.cli.{_group}")  # each module registers its commands on ``app``

from vossegcli.cli.segment import segment  # noqa: E402  (a command function, for tests and scripts)


def main() -> None:  # pragma: no cover - console entry
    app()


__all__ = ["app", "main", "segment"]
