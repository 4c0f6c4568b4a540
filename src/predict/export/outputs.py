"""The post-processing in the exported graph, per head: what the head's `postprocess` computes, as ONNX nodes.

Each export reads the decisions the head already made in `build` (activation, label layout,
thresholds, which output) and re-expresses only its per-row arithmetic; what the head does across
rows or with strings (neighbours, RLE, CSV columns) stays outside the graph and is named in
`outside()`. Output names are the pkl's keys for the same values (FORMATS.md), plus `class_ids` /
`classes` (the argmax and its name) and `binary_masks` (thresholded masks at model resolution).

Every export also compares the graph's outputs with the head's predictions on the same rows.
"""

from __future__ import annotations

import copy
import json

import numpy as np

from predict.data.collate import Batch
from predict.export.agreement import Agreement
from predict.export.graph import GraphBuilder, element_type
from predict.heads.classification import Activation, ClassificationHead, LabelLayout
from predict.heads.metric_learning import MetricLearningHead
from predict.heads.regression import RegressionHead
from predict.heads.semantic_segmentation import MaskActivation, SemanticSegmentationHead
from predict.heads.token_classification import TokenClassificationHead
from predict.report.metrics import ClassificationKind
from predict.runners.base import TensorSpec

# (output name, tensor name, dtype, shape): what GraphBuilder.build takes.
Output = tuple[str, str, type, list]

# pkl masks are float16 (predict.heads.semantic_segmentation): half a float16 step near 1 is 2.4e-4.
FLOAT16_MASK_TOLERANCE = 1e-3
# Thresholded masks may differ where a float16 pkl probability rounded across the threshold.
MASK_AGREEMENT = 0.999


def float_rows(builder: GraphBuilder, output: str, spec: TensorSpec) -> str:
    """A model output as float32 (batch, values), as `predict.heads.base.rows_by_values` reads it."""
    values = builder.op("Flatten", builder.model_output(output), axis=1)
    if np.dtype(spec.dtype) != np.float32:
        values = builder.op("Cast", values, to=element_type(np.float32))
    return values


class HeadExport:
    """What every head export gives; the defaults suit heads whose graph outputs are their predictions."""

    def metadata(self) -> dict[str, str]:
        """metadata_props of the head: thresholds, class names, decisions."""
        return {}

    def outside(self) -> list[str]:
        """The head's steps that stay outside the graph, in words."""
        return []

    def graph_rows(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """One batch of graph outputs as the head's predictions are keyed, for `compare`."""
        return outputs


class ClassificationExport(HeadExport):
    """`predictions` probabilities (the head's activation), and for single-label heads `class_ids` / `classes`."""

    def __init__(self, head: ClassificationHead, outputs: dict[str, TensorSpec]) -> None:
        self.head = head
        self.spec = outputs[head.output]

    @property
    def names(self) -> tuple[str, ...]:
        head = self.head
        return head.class_names if head.layout is LabelLayout.CATEGORICAL else head.label_columns

    @property
    def single_label(self) -> bool:
        return self.head.kind is ClassificationKind.MULTICLASS

    def add(self, builder: GraphBuilder) -> list[Output]:
        head = self.head
        values = float_rows(builder, head.output, self.spec)
        if head.activation is Activation.SOFTMAX:
            values = builder.op("Softmax", values, axis=-1)
        elif head.activation is Activation.SIGMOID:
            values = builder.op("Sigmoid", values)
        if head.layout is LabelLayout.BINARY:  # a two-way softmax keeps class 1; a width of 1 stays
            values = builder.op("Slice", values, builder.const([-1]), builder.const([2**62]), builder.const([1]))
        outputs: list[Output] = [("predictions", values, np.float32, ["batch", len(self.names)])]
        if self.single_label:
            class_ids = builder.op("ArgMax", values, axis=1, keepdims=0)
            classes = builder.op("Gather", builder.const(np.asarray(self.names, dtype=object)), class_ids, axis=0)
            outputs += [("class_ids", class_ids, np.int64, ["batch"]), ("classes", classes, object, ["batch"])]
        return outputs

    def metadata(self) -> dict[str, str]:
        head = self.head
        facts = {
            "label_layout": str(head.layout),
            "activation": str(head.activation),
            "classification_kind": str(head.kind),
        }
        if head.layout is LabelLayout.CATEGORICAL:
            facts["class_names"] = json.dumps(list(head.class_names))
        return facts

    def compare(self, graph: dict[str, np.ndarray], pipeline: dict[str, np.ndarray], *, atol: float) -> Agreement:
        agreement = Agreement()
        expected = pipeline["predictions"]
        agreement.max_difference("predictions", graph["predictions"], expected, tolerance=atol)
        if self.single_label:
            agreement.fraction("argmax agreement", graph["class_ids"] == expected.argmax(axis=1))
        else:
            agreement.fraction("0.5-threshold agreement", (graph["predictions"] > 0.5) == (expected > 0.5))
        return agreement


class RegressionExport(HeadExport):
    """`predictions` (batch, values), float32."""

    def __init__(self, head: RegressionHead, outputs: dict[str, TensorSpec]) -> None:
        self.head = head
        self.spec = outputs[head.output]

    def add(self, builder: GraphBuilder) -> list[Output]:
        values = float_rows(builder, self.head.output, self.spec)
        return [("predictions", values, np.float32, ["batch", len(self.head.label_columns)])]

    def compare(self, graph: dict[str, np.ndarray], pipeline: dict[str, np.ndarray], *, atol: float) -> Agreement:
        agreement = Agreement()
        agreement.max_difference("predictions", graph["predictions"], pipeline["predictions"], tolerance=atol)
        return agreement


class MetricLearningExport(HeadExport):
    """`embeddings`, L2-normalised as `predict.heads._ops.l2_normalize` (an all-zero row stays zero)."""

    def __init__(self, head: MetricLearningHead, outputs: dict[str, TensorSpec]) -> None:
        self.head = head
        self.spec = outputs[head.output]

    def add(self, builder: GraphBuilder) -> list[Output]:
        values = float_rows(builder, self.head.output, self.spec)
        norms = builder.reduce("ReduceL2", values, [1], keepdims=True)
        norms = builder.op("Max", norms, builder.const(np.float32(1e-12)))
        embeddings = builder.op("Div", values, norms)
        return [("embeddings", embeddings, np.float32, ["batch", self.spec.shape[1]])]

    def metadata(self) -> dict[str, str]:
        return {"top_k_similar": str(self.head.top_k)}

    def outside(self) -> list[str]:
        return [
            f"the {self.head.top_k} most cosine-similar other rows of the split (cosine_similarities, "
            f"{self.head.similar_key}): a dot product of the embeddings across all rows"
        ]

    def compare(self, graph: dict[str, np.ndarray], pipeline: dict[str, np.ndarray], *, atol: float) -> Agreement:
        agreement = Agreement()
        agreement.max_difference("embeddings", graph["embeddings"], pipeline["embeddings"], tolerance=atol)
        return agreement


class SemanticSegmentationExport(HeadExport):
    """`masks` probabilities (batch, classes, H, W) at model resolution and `binary_masks` uint8 of the same shape."""

    def __init__(self, head: SemanticSegmentationHead, outputs: dict[str, TensorSpec]) -> None:
        self.head = head
        self.spec = outputs[head.output]

    def add(self, builder: GraphBuilder) -> list[Output]:
        head, config = self.head, self.head.config
        maps = builder.model_output(head.output)
        if np.dtype(self.spec.dtype) != np.float32:
            maps = builder.op("Cast", maps, to=element_type(np.float32))
        if head.channels_last:
            maps = builder.op("Transpose", maps, perm=[0, 3, 1, 2])
        if config.activation is MaskActivation.SIGMOID:
            maps = builder.op("Sigmoid", maps)
        elif config.activation is MaskActivation.SOFTMAX:
            maps = builder.op("Softmax", maps, axis=1)
        classes = len(config.class_names)
        if config.activation is MaskActivation.SOFTMAX:  # each pixel takes its most probable class
            winner = builder.op("ArgMax", maps, axis=1, keepdims=1)
            binary = builder.op("Equal", winner, builder.const(np.arange(classes, dtype=np.int64).reshape(1, -1, 1, 1)))
        else:
            binary = builder.op("GreaterOrEqual", maps, builder.const(np.float32(config.threshold)))
        binary = builder.op("Cast", binary, to=element_type(np.uint8))
        shape = ["batch", classes, "height", "width"]
        return [("masks", maps, np.float32, shape), ("binary_masks", binary, np.uint8, shape)]

    def metadata(self) -> dict[str, str]:
        config = self.head.config
        return {
            "class_names": json.dumps(list(config.class_names)),
            "activation": str(config.activation),
            "threshold": str(config.threshold),
            "rle_order": str(config.rle_order),
        }

    def outside(self) -> list[str]:
        return [
            "resizing the probabilities (bilinear) to each image's own size and thresholding there, "
            "then RLE encoding (rle_predictions); binary_masks are the same rule at model resolution"
        ]

    def compare(self, graph: dict[str, np.ndarray], pipeline: dict[str, np.ndarray], *, atol: float) -> Agreement:
        agreement = Agreement()
        expected = np.asarray(pipeline["masks"], dtype=np.float32)  # float16 in the pkl
        tolerance = max(atol, FLOAT16_MASK_TOLERANCE)
        agreement.max_difference("masks", graph["masks"], expected, tolerance=tolerance)
        if self.head.config.activation is MaskActivation.SOFTMAX:
            winners = expected.argmax(axis=1)[:, None] == np.arange(expected.shape[1])[None, :, None, None]
        else:
            winners = expected >= self.head.config.threshold
        agreement.fraction(
            "mask pixel agreement", graph["binary_masks"].astype(bool) == winners, minimum=MASK_AGREEMENT
        )
        return agreement


class TokenClassificationExport(HeadExport):
    """`token_probabilities` (batch, tokens, classes), `token_class_ids` and `token_classes` (batch, tokens):
    per sub-token; a word takes its first sub-token's, outside the graph (the tokenizer knows the words)."""

    def __init__(self, head: TokenClassificationHead, outputs: dict[str, TensorSpec]) -> None:
        self.head = head
        self.spec = outputs[head.output]
        self._words = copy.copy(head)  # reads the graph's probabilities: no second softmax
        self._words.softmax = False

    def add(self, builder: GraphBuilder) -> list[Output]:
        scores = builder.model_output(self.head.output)
        if np.dtype(self.spec.dtype) != np.float32:
            scores = builder.op("Cast", scores, to=element_type(np.float32))
        if self.head.softmax:
            scores = builder.op("Softmax", scores, axis=-1)
        class_ids = builder.op("ArgMax", scores, axis=2, keepdims=0)
        names = builder.const(np.asarray(self.head.class_names, dtype=object))
        classes = builder.op("Gather", names, class_ids, axis=0)
        shape = ["batch", "tokens"]
        return [
            ("token_probabilities", scores, np.float32, [*shape, len(self.head.class_names)]),
            ("token_class_ids", class_ids, np.int64, shape),
            ("token_classes", classes, object, shape),
        ]

    def metadata(self) -> dict[str, str]:
        return {
            "class_names": json.dumps(list(self.head.class_names)),
            "softmax": str(self.head.softmax).lower(),
            "overflow_tag": self.head.overflow_tag,
        }

    def outside(self) -> list[str]:
        return [
            "words: each whitespace word takes its first sub-token's probabilities and class (the tokenizer's word "
            f"ids); words cut off by max_length get NaN and tag '{self.head.overflow_tag}'"
        ]

    def graph_rows(self, outputs: dict[str, np.ndarray], batch: Batch) -> dict[str, np.ndarray]:
        """Per-word probabilities and tags from the graph's per-token ones, by the head's own rule."""
        return self._words.postprocess({self.head.output: outputs["token_probabilities"]}, batch)

    def compare(self, graph: dict[str, np.ndarray], pipeline: dict[str, np.ndarray], *, atol: float) -> Agreement:
        agreement = Agreement()
        classes = len(self.head.class_names)
        per_word = [
            np.concatenate([*rows, np.empty((0, classes))])
            for rows in (graph["probabilities"], pipeline["probabilities"])
        ]
        agreement.max_difference("word probabilities", per_word[0], per_word[1], tolerance=atol)
        graph_tags = [tag for tags in graph["tag_ids"] for tag in tags]
        pipeline_tags = [tag for tags in pipeline["tag_ids"] for tag in tags]
        agreement.fraction("word tag agreement", np.array(graph_tags) == np.array(pipeline_tags))
        return agreement
