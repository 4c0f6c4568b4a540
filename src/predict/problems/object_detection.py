"""Object detection: boxes, scores and classes per image, mapped back to the original image, and COCO mAP
(predict.heads.object_detection)."""

from predict.enums import ProblemType
from predict.heads.object_detection import ObjectDetectionHead
from predict.problems.modalities import IMAGE
from predict.problems.spec import ProblemSpec
from predict.view.object_detection import ObjectDetectionView

IMAGE_OBJECT_DETECTION = ProblemSpec(
    problem_type=ProblemType.IMAGE_OBJECT_DETECTION, modality=IMAGE, head=ObjectDetectionHead, view=ObjectDetectionView
)
