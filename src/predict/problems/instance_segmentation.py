"""Instance segmentation: a box, class, score and mask per instance, and COCO mask mAP
(predict.heads.instance_segmentation)."""

from predict.enums import ProblemType
from predict.heads.instance_segmentation import InstanceSegmentationHead
from predict.problems.modalities import IMAGE
from predict.problems.spec import ProblemSpec
from predict.view.instance_segmentation import InstanceSegmentationView

IMAGE_INSTANCE_SEGMENTATION = ProblemSpec(
    problem_type=ProblemType.IMAGE_INSTANCE_SEGMENTATION,
    modality=IMAGE,
    head=InstanceSegmentationHead,
    view=InstanceSegmentationView,
)
