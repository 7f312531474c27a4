"""Exceptions raised across raspsynth.

Every error a user can provoke with bad input is one of these, named for what
went wrong, so callers never have to catch numpy's or tracr's internals.
"""


class RaspsynthError(Exception):
    """Base class of every error raspsynth raises on purpose."""


class ModelFormatError(RaspsynthError, ValueError):
    """A model file or weight set does not follow the raspsynth-model/1 format."""


class CompileError(RaspsynthError):
    """tracr refused to compile a program; the message carries tracr's reason."""


class InputError(RaspsynthError, ValueError):
    """An input sequence the model cannot take (unknown token, too long)."""


class NotTracrStructured(RaspsynthError):
    """The weights do not have the layout tracr compiles programs to (for example
    random matrices, or a residual stream rotated rather than permuted), so no
    program structure can be read off them."""


class MetaModelUnavailable(RaspsynthError):
    """A mode that needs the neural meta-model was asked for, but no trained
    checkpoint is available."""
