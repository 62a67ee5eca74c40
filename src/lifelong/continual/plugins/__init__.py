"""One module per strategy; importing this package registers them all."""

from lifelong.continual.plugins import baselines  # noqa: F401
