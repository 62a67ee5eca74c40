"""Typed errors: each says what is wrong, where, and how to fix it, and subclasses the builtin that fits."""

from __future__ import annotations


class LifelongError(Exception):
    """Base of every error the library raises on purpose; the CLI prints it on one line, exit 2."""


class UnknownNameError(LifelongError, KeyError):
    """A registry name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class ConfigError(LifelongError, ValueError):
    """Unknown, missing or ill-typed configuration keys."""


class DataError(LifelongError, ValueError):
    """Data that cannot be used as given."""


class DatasetNotFoundError(LifelongError, FileNotFoundError):
    """A data set whose files are neither present locally nor downloadable."""


class ChecksumError(DataError):
    """A downloaded or local file whose checksum does not match the published one."""


class EmptyExperienceError(DataError):
    """An experience with no training or no test samples."""


class LabelOutOfRangeError(DataError):
    """Labels outside [0, n_classes)."""


class ShapeMismatchError(DataError):
    """Inputs and labels whose shapes do not agree."""


class IncompatibleError(LifelongError, ValueError):
    """A strategy, model and scenario that cannot be combined."""


class NonFiniteLossError(LifelongError, FloatingPointError):
    """A loss term that became NaN or infinite during training."""


class CheckpointError(LifelongError, RuntimeError):
    """A checkpoint that is unreadable, of another format, or of another configuration."""


class RunExistsError(LifelongError, FileExistsError):
    """A run folder that already holds results and was not asked to be resumed or overwritten."""


class MissingExtraError(LifelongError, ImportError):
    """An optional dependency that is not installed."""
