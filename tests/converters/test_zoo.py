"""The Keras applications zoo: every family converts with parity (scripts/keras_zoo.py builds and measures).

The default run converts the `ci` tier: each family's cheapest representative (a reduced-width or
reduced-depth variant where Keras has a knob for it), sized to fit CI. `PREDICT_ZOO=1` adds the rest
of docs/fidelity.md's table (each family's smallest standard variant); `PREDICT_ZOO=all` every
variant (EfficientNet B0-B7, ResNet152, NASNetLarge...), which takes hours on 2 cores.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path

import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("onnxruntime")

_ROOT = Path(__file__).resolve().parents[2]


def _load_script():
    """scripts/keras_zoo.py (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location("keras_zoo", _ROOT / "scripts" / "keras_zoo.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["keras_zoo"] = module  # its dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


_ZOO = _load_script()
_SELECTED = {"": {"ci"}, "1": {"ci", "table"}, "all": {"ci", "table", "all"}}.get(
    os.environ.get("PREDICT_ZOO", ""), {"ci"}
)


def _param(entry):
    marks = [] if entry.tier == "ci" else [pytest.mark.slow]
    if entry.tier not in _SELECTED:
        marks.append(
            pytest.mark.skip(reason=f"tier {entry.tier}: set PREDICT_ZOO={'1' if entry.tier == 'table' else 'all'}")
        )
    if entry.keras2:
        marks.append(
            pytest.mark.skipif(importlib.util.find_spec("tf_keras") is None, reason="needs tf_keras (Keras 2)")
        )
    return pytest.param(entry, id=entry.label.replace(" ", "_"), marks=marks)


@pytest.mark.parametrize("entry", [_param(entry) for entry in _ZOO.ZOO])
def test_application_converts_with_parity_on_real_images(entry, tmp_path):
    from converters.keras_to_onnx import DEFAULT_ATOL, DEFAULT_RTOL

    result = _ZOO.measure(entry, tmp_path)  # raises ConversionError if the converter refuses it
    assert result.failing_elements == 0, (
        f"{entry.label}: {result.failing_elements} logits outside {DEFAULT_ATOL} + {DEFAULT_RTOL} * |keras| "
        f"on real images (max abs diff {result.max_abs_diff:.3g})"
    )
    assert result.top1_agreement == 1.0
    # The calibrated model's logits vary across images: parity on a constant would prove nothing.
    assert result.max_abs_logit == pytest.approx(_ZOO.LOGIT_SCALE, rel=1e-3)
    assert result.logit_spread > 0.1 * _ZOO.LOGIT_SCALE


def test_fine_tuned_application_nested_in_a_model(tmp_path):
    """The usual fine-tuning shape: an application without its top, called inside the user's model.

    The application's own layers (MobileNetV3's `x + 3.0` op nodes, its Rescaling) sit in a nested
    model config, which the converter must patch too.
    """
    import keras
    import numpy as np
    import onnxruntime
    from numpy.testing import assert_allclose

    from converters.keras_to_onnx import convert_keras_to_onnx

    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV3Small(
        weights=None, include_top=False, input_shape=(32, 32, 3), alpha=0.75, pooling="avg"
    )
    image = keras.Input((32, 32, 3), name="image")
    model = keras.Model(image, keras.layers.Dense(4, name="scores")(base(image)))
    path = tmp_path / "fine_tuned.h5"
    model.save(path)
    images = _ZOO.real_images(32)
    report = convert_keras_to_onnx(path, tmp_path / "fine_tuned.onnx")
    session = onnxruntime.InferenceSession(str(report.onnx_path), providers=["CPUExecutionProvider"])
    expected = model.predict(images, verbose=0)
    assert np.std(expected, axis=0).max() > 0  # outputs vary with the image
    assert_allclose(session.run(None, {"image": images})[0], expected, rtol=1e-3, atol=1e-4)
