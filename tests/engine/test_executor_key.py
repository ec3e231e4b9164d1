"""``executor:`` in a pipeline file: threads by default, ray on request, anything else one located line."""

from __future__ import annotations

import pytest

from engine import PipelineConfigError, load_pipeline
from tests.engine.test_config import GOOD, _write


def test_threads_unless_the_file_says_ray(tmp_path):
    assert load_pipeline(_write(tmp_path, GOOD)).executor == "threads"
    assert load_pipeline(_write(tmp_path, "executor: ray\n" + GOOD)).executor == "ray"


@pytest.mark.parametrize("value", ["dask", "Ray", "[ray]", "1"])
def test_an_unknown_executor_is_one_located_line(tmp_path, value):
    path = _write(tmp_path, GOOD + f"executor: {value}\n")
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path)
    message = str(caught.value)
    assert message.startswith(f"{path}:") and "executor:" in message and "\n" not in message
    assert "must be" in message
