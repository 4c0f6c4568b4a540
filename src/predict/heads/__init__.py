"""The head registry: problem type to the head that post-processes its outputs.

One dict literal, no decorators or module scanning: what is registered is what you read here.
Problem types missing from it (see `predict.config.ProblemType`) are refused by `load_config`,
which lists the available ones.
"""

from predict.config import ProblemType
from predict.heads.base import Head
from predict.heads.classification import ClassificationHead
from predict.heads.regression import RegressionHead

HEADS: dict[ProblemType, type[Head]] = {
    ProblemType.IMAGE_CLASSIFICATION: ClassificationHead,
    ProblemType.IMAGE_REGRESSION: RegressionHead,
}
