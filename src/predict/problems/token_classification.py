"""Token classification: a tag per whitespace word, read from its first sub-token, and entity F1
(predict.heads.token_classification)."""

from predict.enums import ProblemType, TextLayout
from predict.heads.token_classification import TokenClassificationHead
from predict.problems.modalities import TEXT
from predict.problems.spec import ProblemSpec
from predict.view.token_classification import TokenClassificationView

TEXT_TOKEN_CLASSIFICATION = ProblemSpec(
    problem_type=ProblemType.TEXT_TOKEN_CLASSIFICATION,
    modality=TEXT,
    layout=TextLayout.WORDS,
    head=TokenClassificationHead,
    view=TokenClassificationView,
)
