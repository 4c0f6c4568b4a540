"""Classification of images, texts, audio clips and arrays: class probabilities, the predicted class, and
the H2O classification metrics (predict.heads.classification)."""

from predict.enums import ProblemType, TextLayout
from predict.heads.classification import ClassificationHead
from predict.problems.modalities import ARRAY, AUDIO, IMAGE, TEXT
from predict.problems.spec import ProblemSpec
from predict.view.classification import ClassificationView

IMAGE_CLASSIFICATION = ProblemSpec(
    problem_type=ProblemType.IMAGE_CLASSIFICATION, modality=IMAGE, head=ClassificationHead, view=ClassificationView
)
TEXT_CLASSIFICATION = ProblemSpec(
    problem_type=ProblemType.TEXT_CLASSIFICATION,
    modality=TEXT,
    layout=TextLayout.SEQUENCE,
    head=ClassificationHead,
    view=ClassificationView,
)
AUDIO_CLASSIFICATION = ProblemSpec(
    problem_type=ProblemType.AUDIO_CLASSIFICATION, modality=AUDIO, head=ClassificationHead, view=ClassificationView
)
ARRAY_CLASSIFICATION = ProblemSpec(
    problem_type=ProblemType.ARRAY_CLASSIFICATION, modality=ARRAY, head=ClassificationHead, view=ClassificationView
)
