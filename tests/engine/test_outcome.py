"""The run's outcome: exit 0 only within max_failures, exit 4 beyond it, failures counted by error type."""

from __future__ import annotations

from fractions import Fraction

import pytest

from engine import PipelineConfigError, load_pipeline
from engine.config import MaxFailures
from engine.dead_letter import read_dead_letters
from engine.report import EXIT_FAILURES, EXIT_INTERRUPTED, EXIT_OK, EXIT_STAGE_DIED, EXIT_UNRECORDED
from tests.engine import workers
from tests.engine.conftest import stage


def _filtering(key: str, **top: object) -> dict:
    """Items 1..100 through a stage that fails every tenth (10 failures), into a sink.

    Item attempts: 1 (source) + 100 (filter) + 90 (sink) = 191.
    """
    return {
        **top,
        "queues": [{"name": "numbers"}, {"name": "kept"}],
        "workers": [
            stage("Source", "Range", input_values=[[1, 101]], output_queues="numbers"),
            stage("Filter", "FailSome", instances=3, params={"every": 10}, input_queue="numbers",
                  output_queues="kept"),
            stage("Sink", "Collect", input_queue="kept", params={"key": key}),
        ],
    }


def test_failures_beyond_the_default_allowance_exit_4(run_pipeline, key):
    report = run_pipeline(_filtering(key))
    assert report.exit_code == EXIT_FAILURES == 4
    assert report.outcome == "failures" and not report.ok
    assert report.failures == 10 and report.attempts == 191 and report.delivered == 90
    assert report.max_failures == "0"
    assert report.reason == "finished with 10 failures (ValueError 10); max_failures is 0 (of 191 item attempts)"
    assert len(workers.collected(key)) == 90  # the rest still flowed


@pytest.mark.parametrize(
    "allowance, code",
    [(10, EXIT_OK), ("10", EXIT_OK), (9, EXIT_FAILURES), ("5.24%", EXIT_OK), ("5.23%", EXIT_FAILURES),
     ("100%", EXIT_OK), ("0%", EXIT_FAILURES)],
)
def test_the_allowance_in_the_file_is_a_count_or_a_percentage_of_item_attempts(run_pipeline, key, allowance, code):
    # 10 failures of 191 attempts is 5.2356%: 5.24% allows it, 5.23% does not.
    report = run_pipeline(_filtering(key, max_failures=allowance))
    assert report.exit_code == code, report.reason
    assert report.failures == 10 and report.attempts == 191
    if code == EXIT_OK:
        assert report.reason == f"done with 10 failures (ValueError 10), within max_failures {allowance}"


@pytest.mark.parametrize(
    "in_file, given, code", [(0, "10", EXIT_OK), (10, "0", EXIT_FAILURES), ("50%", "5%", EXIT_FAILURES)]
)
def test_the_executor_option_wins_over_the_file(run_pipeline, key, in_file, given, code):
    report = run_pipeline(_filtering(key, max_failures=in_file), max_failures=MaxFailures.parse(given))
    assert report.exit_code == code, report.reason
    assert report.max_failures == given
    plain = run_pipeline(_filtering(key, max_failures=in_file), max_failures=given)  # as text, as a caller may
    assert plain.exit_code == code and plain.max_failures == given


def test_a_bad_allowance_given_to_the_executor_is_refused_before_anything_runs(make_executor, key):
    with pytest.raises(ValueError, match="must be a whole number of failures >= 0 or a percentage"):
        make_executor(_filtering(key), max_failures="-1")
    assert workers.collected(key) == []


@pytest.mark.parametrize("allowance", [0, "100%", 1_000_000])
def test_a_worker_that_returns_instead_of_yielding_fails_the_run_whatever_the_allowance(run_pipeline, key, allowance):
    report = run_pipeline({
        "max_failures": allowance,
        "queues": [{"name": "numbers"}, {"name": "prices"}],
        "workers": [
            stage("Source", "Range", input_values=[[1, 266]], output_queues="numbers"),
            stage("Price", "ReturnsValue", instances=4, input_queue="numbers", output_queues="prices"),
            stage("Sink", "Collect", input_queue="prices", params={"key": key}),
        ],
    })
    assert report.exit_code == EXIT_FAILURES, report.reason
    assert report.failures == 265 and report.delivered == 0
    assert report.stage("Price").errors == {"TypeError": 265} and report.errors == {"TypeError": 265}
    assert report.reason == "finished with 265 failures (TypeError 265); nothing reached a sink"


@pytest.mark.parametrize("returned", ["str", "dict", "zero"])
def test_a_string_a_mapping_or_a_falsy_value_returned_by_process_fails_the_item(run_pipeline, key, returned):
    # Iterating a returned "12" would pass on "1" and "2"; a returned 0 would vanish as "no outputs".
    report = run_pipeline({
        "queues": [{"name": "numbers"}, {"name": "out"}],
        "workers": [
            stage("Source", "Range", input_values=[[1, 11]], output_queues="numbers"),
            stage("Price", "ReturnsValue", params={"as_": returned}, input_queue="numbers", output_queues="out"),
            stage("Sink", "Collect", input_queue="out", params={"key": key}),
        ],
    })
    assert report.exit_code == EXIT_FAILURES, report.reason
    assert report.stage("Price").errors == {"TypeError": 10}
    assert workers.collected(key) == []
    entry = read_dead_letters(report.dead_letter_path)[0]
    assert entry["message"].startswith("process() returned a ") and "yield outputs" in entry["message"]


def test_failures_are_counted_by_error_type_per_stage_and_for_the_run(run_pipeline, key):
    report = run_pipeline({
        "max_failures": "50%",
        "queues": [{"name": "numbers"}, {"name": "kept"}],
        "workers": [
            stage("Source", "Range", input_values=[[1, 101]], output_queues="numbers"),
            stage("Check", "FailByKind", instances=2, params={"kinds": {"KeyError": 7, "ValueError": 10}},
                  input_queue="numbers", output_queues="kept"),
            stage("Sink", "FailByKind", params={"kinds": {"ValueError": 11}}, input_queue="kept"),
        ],
    })
    assert report.exit_code == EXIT_OK, report.reason
    # 1..100: 14 multiples of 7, 9 more of 10 (70 is a 7); the sink fails 11..99 step 11 except 77: 8.
    assert report.stage("Check").errors == {"KeyError": 14, "ValueError": 9}
    assert report.stage("Sink").errors == {"ValueError": 8}
    assert report.errors == {"KeyError": 14, "ValueError": 17}
    assert sum(report.errors.values()) == report.failed == report.failures == 31
    assert "31 failures (ValueError 17, KeyError 14)" in report.reason
    assert report.to_dict()["stages"][1]["errors"] == {"KeyError": 14, "ValueError": 9}


def test_a_stage_that_dies_exits_1_even_with_failures_beyond_the_allowance(run_pipeline):
    report = run_pipeline({
        "queues": [{"name": "numbers"}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 50]], output_queues="numbers"),
            stage("Sink", "Die", instances=2, input_queue="numbers", max_restarts=0),
        ],
    })
    assert report.exit_code == EXIT_STAGE_DIED and report.outcome == "died"
    assert report.failures > 0 and report.delivered == 0


def test_an_interrupt_exits_130_even_with_failures(make_executor, key):
    executor = make_executor({
        "queues": [{"name": "numbers", "maxsize": 4}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 100_000]], output_queues="numbers"),
            stage("Sink", "ReturnsValue", input_queue="numbers"),
        ],
    }, on_status=lambda statuses: executor.interrupt())
    report = executor.run()
    assert report.exit_code == EXIT_INTERRUPTED and report.outcome == "interrupted"
    assert report.failures > 0


def test_max_failures_in_the_file(write_pipeline):
    document = _filtering("unused")
    assert load_pipeline(write_pipeline(document)).max_failures == MaxFailures(0)
    for value, expected in ((7, MaxFailures(7)), ("7", MaxFailures(7)), ("2.5%", MaxFailures(None, Fraction(5, 2))),
                            ("100 %", MaxFailures(None, Fraction(100)))):
        assert load_pipeline(write_pipeline({"max_failures": value, **document})).max_failures == expected


@pytest.mark.parametrize("value", [-1, 1.5, True, "", "many", "101%", "-5%", "5%%", [1], {"n": 1}])
def test_a_bad_max_failures_is_one_line_with_file_and_line(write_pipeline, value):
    path = write_pipeline({"name": "p", "max_failures": value, **_filtering("unused")})
    with pytest.raises(PipelineConfigError) as error:
        load_pipeline(path)
    text = str(error.value)
    assert text.startswith(f"{path}:2: max_failures: must be a whole number of failures >= 0 or a percentage")
    assert "\n" not in text


def test_a_max_failures_built_in_python_is_checked():
    with pytest.raises(ValueError):
        MaxFailures(-1)
    with pytest.raises(ValueError):
        MaxFailures(None, Fraction(101))
    assert str(MaxFailures.parse("2.5%")) == "2.5%" and str(MaxFailures.parse(3)) == "3"
    assert MaxFailures.parse("1%").allows(1, 100) and not MaxFailures.parse("1%").allows(2, 100)


def test_a_broken_dead_letter_file_outranks_a_dead_stage_and_an_interrupt_outranks_both(make_executor):
    # /dev/full takes open() and fails every write with ENOSPC, as a full disk does.
    document = {
        "queues": [{"name": "numbers", "maxsize": 4}],
        "workers": [
            stage("Source", "Range", input_values=[[0, 100_000]], output_queues="numbers"),
            stage("Sink", "Die", input_queue="numbers", max_restarts=0),
        ],
    }
    report = make_executor(document, dead_letter="/dev/full").run()
    assert report.exit_code == EXIT_UNRECORDED and report.outcome == "unrecorded", report.reason
    assert report.stage("Sink").state == "died" and report.unrecorded > 0

    executor = make_executor(document, dead_letter="/dev/full", on_status=lambda statuses: executor.interrupt())
    report = executor.run()
    assert report.exit_code == EXIT_INTERRUPTED and report.unrecorded > 0, report.reason
