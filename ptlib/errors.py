"""The library's own error types: every bad input raises one of these, with a message that
names the problem and where it is (file and line, config field, template)."""


class PTLibError(Exception):
    """Base class of every error ptlib raises on purpose."""


class DataError(PTLibError, ValueError):
    """A task file or fact is malformed: the message names the file and line."""


class TemplateError(PTLibError, ValueError):
    """A prompt template cannot be parsed or does not fit the method."""


class ConfigError(PTLibError, ValueError):
    """A configuration value is out of range or unknown: the message names the field."""


class ModelError(PTLibError, RuntimeError):
    """A model cannot be found or loaded, or a saved prompt does not fit it."""


class TrainingError(PTLibError, RuntimeError):
    """Training cannot go on (for example a non-finite loss): the message names the step."""


class FileError(PTLibError, ValueError):
    """A prompt or checkpoint file is missing, unreadable or of another kind: the message names
    the file."""


class DamagedFileError(FileError):
    """A prompt or checkpoint file does not match the content hash written with it (flipped
    bytes, edited metadata): the message names the file."""
