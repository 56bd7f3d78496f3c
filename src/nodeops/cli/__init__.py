"""The ``nodeops`` command: Typer app, one module per noun, Rich output. Sync edge: calls asyncio.run at most once."""
