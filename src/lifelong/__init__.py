"""lifelong: multi-task, continual, curriculum and meta-continual learning on PyTorch."""

__version__ = "0.1.0"
