"""Regression of images, texts, audio clips and arrays: one or more values per row, and the H2O regression
metrics (predict.heads.regression)."""

from predict.enums import ProblemType, TextLayout
from predict.heads.regression import RegressionHead
from predict.problems.modalities import ARRAY, AUDIO, IMAGE, TEXT
from predict.problems.spec import ProblemSpec
from predict.view.regression import RegressionView

IMAGE_REGRESSION = ProblemSpec(
    problem_type=ProblemType.IMAGE_REGRESSION, modality=IMAGE, head=RegressionHead, view=RegressionView
)
TEXT_REGRESSION = ProblemSpec(
    problem_type=ProblemType.TEXT_REGRESSION,
    modality=TEXT,
    layout=TextLayout.SEQUENCE,
    head=RegressionHead,
    view=RegressionView,
)
AUDIO_REGRESSION = ProblemSpec(
    problem_type=ProblemType.AUDIO_REGRESSION, modality=AUDIO, head=RegressionHead, view=RegressionView
)
ARRAY_REGRESSION = ProblemSpec(
    problem_type=ProblemType.ARRAY_REGRESSION, modality=ARRAY, head=RegressionHead, view=RegressionView
)
