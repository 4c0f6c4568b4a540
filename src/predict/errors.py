"""Errors a user can cause. The CLI prints their message in one line and exits with code 2."""


class PredictError(ValueError):
    """Base of every error caused by the user's config, data or model."""


class ConfigError(PredictError):
    """The task config is invalid: unknown, missing or badly typed key, or a named file or column is missing."""


class InputError(PredictError):
    """A row of the dataframe, or a file it names, cannot be read or does not fit the model."""


class ConversionError(PredictError):
    """A Keras model could not be converted to ONNX, or the ONNX graph disagrees with Keras."""


def one_line(error: BaseException, *, limit: int = 500) -> str:
    """A library's error message folded onto one line, for quoting inside ours."""
    return " ".join(str(error).split())[:limit]
