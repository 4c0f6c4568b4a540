"""The `serve:` section and the `predict serve` command line: checked before any model loads."""

from __future__ import annotations

import pytest

from predict.cli import main
from predict.errors import ConfigError
from predict.task import load_config
from tests.serve.helpers import CONFIGS

CONFIG = CONFIGS / "image_classification.yaml"


def test_defaults_are_tritons():
    serve = load_config(CONFIG).serve
    assert serve.model_name is None and serve.max_batch_size is None  # the config's stem, runtime.batch_size
    assert serve.max_queue_delay_microseconds == 0
    assert serve.max_queue_size >= 1 and serve.request_timeout_seconds > 0


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("serve.max_batch_size=0", "serve.max_batch_size must be >= 1 (got 0)"),
        ("serve.max_queue_delay_microseconds=-1", "serve.max_queue_delay_microseconds must be >= 0 (got -1)"),
        ("serve.max_queue_size=0", "serve.max_queue_size must be >= 1 (got 0)"),
        ("serve.request_timeout_seconds=0", "serve.request_timeout_seconds must be > 0 (got 0)"),
        ("serve.replicas=0", "serve.replicas must be >= 1 (got 0)"),
        ("serve.model_name=a/b", "serve.model_name must be letters, digits"),
        ("serve.max_batch_sise=4", "unknown key serve.max_batch_sise: did you mean 'max_batch_size'?"),
    ],
)
def test_bad_serve_settings_name_the_key(override, message):
    with pytest.raises(ConfigError) as raised:
        load_config(CONFIG, [override])
    assert message in str(raised.value)


def test_the_command_refuses_a_bad_port_and_a_bad_config_before_loading(capsys):
    with pytest.raises(SystemExit):
        main(["serve", "--config", str(CONFIG), "--port", "70000"])
    assert "must be 0 to 65535 (got 70000)" in capsys.readouterr().err
    assert main(["serve", "--config", str(CONFIG), "--set", "serve.max_queue_size=0"]) == 2
    assert "error: image_classification.yaml: serve.max_queue_size must be >= 1 (got 0)" in capsys.readouterr().err


def test_replicas_need_the_ray_engine(capsys):
    assert main(["serve", "--config", str(CONFIG), "--set", "serve.replicas=2"]) == 2
    assert "serve.replicas: 2 needs --engine ray (the local server is one process)" in capsys.readouterr().err
