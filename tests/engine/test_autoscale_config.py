"""``instances: auto`` in a pipeline file: what loads, and one located line for every mistake."""

from __future__ import annotations

import dataclasses

import pytest

from engine import PipelineConfigError, load_pipeline
from engine.config import AUTO_MAX_INSTANCES, AUTO_START_INSTANCES, AutoInstances
from tests.engine.test_config import GOOD, _write

AUTO = GOOD.replace("    instances: 20\n", "    instances: auto\n    min_instances: 4\n    max_instances: 300\n")


def test_auto_loads_with_its_bounds_and_starts_at_32(tmp_path):
    echo = load_pipeline(_write(tmp_path, AUTO)).stage("Echo")
    assert echo.auto == AutoInstances(4, 300) and echo.instances == AUTO_START_INSTANCES == 32
    assert echo.max_threads == 300


def test_auto_bounds_default_to_1_and_1000_and_the_start_stays_within_them(tmp_path):
    bare = load_pipeline(_write(tmp_path, GOOD.replace("    instances: 20\n", "    instances: auto\n")))
    assert bare.stage("Echo").auto == AutoInstances(1, AUTO_MAX_INSTANCES) and AUTO_MAX_INSTANCES == 1000
    small = load_pipeline(_write(tmp_path, AUTO.replace("max_instances: 300", "max_instances: 5")))
    assert small.stage("Echo").instances == 5
    large = load_pipeline(_write(tmp_path, AUTO.replace("min_instances: 4", "min_instances: 40")))
    assert large.stage("Echo").instances == 40
    # A min above the default max raises the default max with it.
    high = GOOD.replace("    instances: 20\n", "    instances: auto\n    min_instances: 2000\n")
    assert load_pipeline(_write(tmp_path, high)).stage("Echo").auto == AutoInstances(2000, 2000)


def test_auto_and_its_bounds_come_from_variables(tmp_path):
    text = GOOD.replace(
        "    instances: 20\n",
        "    instances: ${THREADS:-auto}\n    min_instances: ${LOW:-2}\n    max_instances: ${HIGH:-50}\n",
    )
    echo = load_pipeline(_write(tmp_path, text), env={"HIGH": "64"}).stage("Echo")
    assert echo.auto == AutoInstances(2, 64)
    with pytest.raises(PipelineConfigError, match=r"min_instances: is only read with instances: auto \(instances is '7'\)"):
        load_pipeline(_write(tmp_path, text), env={"THREADS": "7"})


BAD = {
    "min above max": ("min_instances: 4", "min_instances: 400", 18,
                      "workers[1] (Echo).max_instances: must be at least min_instances (400), not 300"),
    "max zero": ("max_instances: 300", "max_instances: 0", 18, "max_instances: must be a whole number from 1 to 10,000, not 0"),
    "max too large": ("max_instances: 300", "max_instances: 10001", 18, "must be a whole number from 1 to 10,000, not 10001"),
    "min text": ("min_instances: 4", "min_instances: few", 17, "min_instances: must be a whole number from 1 to 10,000, not 'few'"),
    "min float": ("min_instances: 4", "min_instances: 2.5", 17, "min_instances: must be a whole number from 1 to 10,000, not 2.5"),
    "auto in capitals": ("instances: auto", "instances: AUTO", 16, "instances: must be a positive integer or auto, not 'AUTO'"),
    "bounds without auto": ("instances: auto", "instances: 20", 17,
                            "workers[1] (Echo).min_instances: is only read with instances: auto (instances is 20)"),
    "typo": ("max_instances: 300", "max_instance: 300", 18, "max_instance: unknown key; did you mean 'max_instances'?"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_auto_settings_are_one_located_line(tmp_path, case):
    old, new, line, fragment = BAD[case]
    assert old in AUTO
    path = _write(tmp_path, AUTO.replace(old, new, 1))
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path, env={})
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message


def test_auto_on_a_source_is_refused(tmp_path):
    text = AUTO.replace("    instances: 2\n", "    instances: auto\n", 1)
    with pytest.raises(PipelineConfigError, match=r":10: stage Source.instances: instances: auto needs an input_queue"):
        load_pipeline(_write(tmp_path, text))


def test_the_thread_limit_counts_max_instances_of_auto_stages(tmp_path):
    text = AUTO.replace("max_instances: 300", "max_instances: 10000").replace(
        "    batch_size: 500\n", "    batch_size: 500\n    instances: auto\n    max_instances: 10000\n"
    )
    with pytest.raises(PipelineConfigError, match=r"the stages have 20,002 threads in all \(max_instances for instances: auto\); at most 20,000"):
        load_pipeline(_write(tmp_path, text))


def test_a_config_built_in_python_is_checked_too(tmp_path):
    config = load_pipeline(_write(tmp_path, AUTO))
    echo = config.stage("Echo")
    for bad, fragment in (
        (dataclasses.replace(echo, auto=AutoInstances(5, 3)), "max_instances: must be at least min_instances (5), not 3"),
        (dataclasses.replace(echo, auto=AutoInstances(0, 3)), "min_instances: must be from 1 to 10,000"),
        (dataclasses.replace(echo, instances=3), "instances: must be 32 (where the auto pool starts) when auto is set"),
    ):
        stages = tuple(bad if s.name == "Echo" else s for s in config.stages)
        with pytest.raises(PipelineConfigError, match=fragment.replace("(", r"\(").replace(")", r"\)")):
            dataclasses.replace(config, stages=stages).check()
