"""Command-line tools: ``mmaplog-read`` (:mod:`mmaplog.cli.read`)."""

__all__: list[str] = []
