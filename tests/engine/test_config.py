"""Pipeline files: what loads, and one clear located line for everything that does not."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from engine import PipelineConfigError, load_pipeline
from tests.engine import workers

GOOD = """\
queues:
  - name: SymbolQueue
    description: symbols scraped from the page
    maxsize: 50
  - name: Prices
workers:
  - name: Source
    location: tests.engine.workers
    class: Range
    instances: 2
    input_values: [[0, 10]]
    output_queues: [SymbolQueue]
  - name: Echo
    location: tests.engine.workers
    class: Echo
    instances: 20
    input_queue: SymbolQueue
    output_queues: Prices
    params: {max_delay: 0.01}
  - name: Writer
    location: tests.engine.workers
    class: BatchCollect
    input_queue: Prices
    batch_size: 500
    batch_timeout: 0.5
    params: {key: k}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "pipeline.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_a_good_pipeline_loads_into_dataclasses(tmp_path):
    config = load_pipeline(_write(tmp_path, GOOD))
    assert config.name == "pipeline"
    assert config.queues["SymbolQueue"].maxsize == 50
    assert config.queues["Prices"].maxsize == 1000  # bounded by default
    source, echo, writer = config.stages
    assert source.worker_class is workers.Range and source.is_source
    assert source.input_values == ([0, 10],) and source.output_queues == ("SymbolQueue",)
    assert echo.output_queues == ("Prices",)  # a single name is a list of one
    assert echo.params == {"max_delay": 0.01} and echo.instances == 20
    assert writer.batch_size == 500 and writer.batch_timeout == 0.5 and writer.is_sink
    assert writer.max_restarts == 3


def test_environment_variables_are_expanded_with_defaults(tmp_path):
    text = GOOD.replace("[[0, 10]]", '["${BASE:-http://127.0.0.1:5000}/wiki", "${HOST}/x", "${EMPTY:-d}"]')
    config = load_pipeline(_write(tmp_path, text), env={"HOST": "h", "EMPTY": ""})
    assert config.stages[0].input_values == ("http://127.0.0.1:5000/wiki", "h/x", "d")
    config = load_pipeline(_write(tmp_path, text), env={"HOST": "h", "BASE": "http://b"})
    assert config.stages[0].input_values[0] == "http://b/wiki"


# Each case: a change to GOOD, the line the message must name, and a fragment of the message.
BAD = {
    "unknown key with a suggestion": (
        ("    instances: 20\n", "    instnaces: 20\n"), 16, "workers[1] (Echo).instnaces: unknown key; did you mean 'instances'?",
    ),
    "unknown top-level key": (("queues:\n", "queus:\n"), 1, "unknown key; did you mean 'queues'?"),
    "queue used but not declared": (
        ("    output_queues: Prices\n", "    output_queues: Price\n"), 18,
        "stage Echo.output_queues: queue 'Price' is not declared under queues; did you mean 'Prices'?",
    ),
    "queue with a consumer but no producer": (
        ("    output_queues: Prices\n", "    output_queues: []\n"), 23,
        "queue 'Prices' has a consumer but no stage writes to it",
    ),
    "queue written to but never read": (
        ("    input_queue: Prices\n", "    input_queue: SymbolQueue\n"), 23,
        "both take from queue 'SymbolQueue'",
    ),
    "instances zero": (("    instances: 20\n", "    instances: 0\n"), 16, "instances: must be a positive integer or auto, not 0"),
    "instances text": (("    instances: 20\n", "    instances: many\n"), 16, "must be a positive integer or auto, not 'many'"),
    "instances boolean": (("    instances: 20\n", "    instances: true\n"), 16, "must be a positive integer or auto, not True"),
    "module that does not import": (
        ("    location: tests.engine.workers\n    class: Echo\n", "    location: tests.engine.nope\n    class: Echo\n"),
        14, "cannot import module 'tests.engine.nope': No module named 'tests.engine.nope'",
    ),
    "class missing": (("    class: Echo\n", "    class: Ecko\n"), 15, "has no class 'Ecko'; did you mean 'Echo'?"),
    "class without process": (("    class: Echo\n", "    class: NotAWorker\n"), 15, "NotAWorker has no process(item) method"),
    "batch class without batch_size": (
        ("    class: Echo\n", "    class: OnlyBatch\n"), 15, "has no process(item) method; it has process_batch(items): set batch_size",
    ),
    "batch_size on a class without process_batch": (
        ("    class: BatchCollect\n", "    class: Collect\n"), 24, "batch_size is set but Collect has no process_batch",
    ),
    "params the class does not take": (
        ("    params: {max_delay: 0.01}\n", "    params: {max_dleay: 0.01}\n"), 19,
        "Echo: got an unexpected keyword argument 'max_dleay'",
    ),
    "source without input_values": (("    input_values: [[0, 10]]\n", ""), 7, "is a source and needs input_values"),
    "duplicate stage names": (("  - name: Writer\n", "  - name: Echo\n"), 20, "two stages are named 'Echo'"),
    "duplicate queue names": (("  - name: Prices\n", "  - name: SymbolQueue\n"), 5, "queue 'SymbolQueue' is declared twice"),
    "maxsize zero": (("    maxsize: 50\n", "    maxsize: 0\n"), 4, "maxsize: must be a positive integer, not 0"),
    "maxsize negative": (("    maxsize: 50\n", "    maxsize: -5\n"), 4, "must be a positive integer, not -5"),
    "duplicate key": (("    instances: 20\n", "    instances: 20\n    instances: 3\n"), 17, "duplicate key 'instances'"),
    "unset variable": (("    class: Echo\n", "    class: ${WORKER_CLASS}\n"), 15, "environment variable WORKER_CLASS is not set"),
    "python tag": (
        ("    params: {max_delay: 0.01}\n", "    params: !!python/object/apply:os.system ['echo pwned']\n"), 19,
        "tag '!!python/object/apply:os.system' is not allowed",
    ),
    "not YAML": (("    maxsize: 50\n", "    maxsize: [50\n"), 5, "not valid YAML"),
    "params not a mapping": (("    params: {max_delay: 0.01}\n", "    params: [1, 2]\n"), 19, "params: must be a mapping"),
}


@pytest.mark.parametrize("case", BAD, ids=list(BAD))
def test_bad_configuration_names_file_line_and_field(tmp_path, case):
    (old, new), line, fragment = BAD[case]
    assert old in GOOD, "the case must change something"
    path = _write(tmp_path, GOOD.replace(old, new, 1))
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path, env={})
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message


def test_a_cycle_is_refused(tmp_path):
    # One -> b -> Two -> a -> One: pills could never reach it, so the run would never end.
    text = """\
    queues: [{name: a}, {name: b}, {name: c}]
    workers:
      - {name: Source, location: tests.engine.workers, class: Range, input_values: [[0, 1]], output_queues: a}
      - {name: One, location: tests.engine.workers, class: Echo, input_queue: a, output_queues: b}
      - {name: Two, location: tests.engine.workers, class: Echo, input_queue: b, output_queues: [a, c]}
      - {name: Sink, location: tests.engine.workers, class: Collect, input_queue: c, params: {key: k}}
    """
    path = _write(tmp_path, text)
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path)
    assert str(caught.value) == (
        f"{path}:4: stage One: stages form a cycle (One -> Two -> One); a pipeline must flow one way"
    )


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("- a\n- b\n", ":1: the top level must be a mapping with 'queues' and 'workers', not a list"),
        ("just text\n", ":1: the top level must be a mapping with 'queues' and 'workers', not a single value"),
        ("", ":1: the top level must be a mapping with 'queues' and 'workers', not empty"),
        ("queues: []\n", ":1: 'workers' is missing"),
        ("queues: []\nworkers: []\n", ":2: workers: the pipeline has no stages"),
        ("queues: []\nworkers: {name: x}\n", ":2: workers: must be a list of mappings (each entry starts with '- name: ...')"),
    ],
)
def test_top_level_problems(tmp_path, text, fragment):
    path = _write(tmp_path, text)
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path)
    assert str(caught.value) == f"{path}{fragment}"


def test_missing_file(tmp_path):
    with pytest.raises(PipelineConfigError, match="nope.yaml: pipeline file not found"):
        load_pipeline(tmp_path / "nope.yaml")


# Every numeric key, written as a variable (quoted or not, with or without a default).
NUMERIC_FROM_VARIABLES = """\
monitor_interval: ${INTERVAL}
queues:
  - name: Numbers
    maxsize: "${MAXSIZE}"
workers:
  - name: Source
    location: tests.engine.workers
    class: Range
    instances: ${PRICE_THREADS:-20}
    input_values: [[0, 10]]
    output_queues: Numbers
    params: {tag: "${BATCH}"}
  - name: Writer
    location: tests.engine.workers
    class: BatchCollect
    input_queue: Numbers
    batch_size: ${BATCH}
    batch_timeout: ${TIMEOUT}
    max_restarts: ${RESTARTS}
    params: {key: "${KEY}"}
"""
NUMERIC_ENV = {"INTERVAL": "0.25", "MAXSIZE": "40", "BATCH": "8", "TIMEOUT": "1e-1", "RESTARTS": "0", "KEY": "7"}


def test_numeric_keys_read_variables(tmp_path):
    config = load_pipeline(_write(tmp_path, NUMERIC_FROM_VARIABLES), env={**NUMERIC_ENV, "PRICE_THREADS": "7"})
    source, writer = config.stages
    assert source.instances == 7 and config.queues["Numbers"].maxsize == 40
    assert writer.batch_size == 8 and writer.batch_timeout == 0.1 and writer.max_restarts == 0
    assert config.monitor_interval == 0.25
    # Worker params stay as the YAML gives them: text from a variable is text.
    assert source.params == {"tag": "8"} and writer.params == {"key": "7"}
    # The default applies when the variable is unset or empty, as in a shell.
    for env in (NUMERIC_ENV, {**NUMERIC_ENV, "PRICE_THREADS": ""}):
        assert load_pipeline(_write(tmp_path, NUMERIC_FROM_VARIABLES), env=env).stages[0].instances == 20


@pytest.mark.parametrize(
    ("variable", "value", "line", "fragment"),
    [
        ("PRICE_THREADS", "seven", 9, "workers[0] (Source).instances: must be a positive integer or auto, not 'seven' (from ${PRICE_THREADS:-20})"),
        ("PRICE_THREADS", "-1", 9, "instances: must be a positive integer or auto, not '-1' (from ${PRICE_THREADS:-20})"),
        ("PRICE_THREADS", "0", 9, "instances: must be a positive integer or auto, not '0'"),
        ("PRICE_THREADS", "1e3", 9, "instances: must be a positive integer or auto, not '1e3'"),
        ("PRICE_THREADS", "7; rm -rf /", 9, "instances: must be a positive integer or auto, not '7; rm -rf /'"),
        ("PRICE_THREADS", " 7", 9, "instances: must be a positive integer or auto, not ' 7'"),
        ("PRICE_THREADS", "0x10", 9, "instances: must be a positive integer or auto, not '0x10'"),
        ("PRICE_THREADS", "1_000", 9, "instances: must be a positive integer or auto, not '1_000'"),
        ("PRICE_THREADS", "\u0667", 9, "instances: must be a positive integer or auto, not"),  # an Arabic-Indic 7
        ("PRICE_THREADS", "10001", 9, "stage Source.instances: must be from 1 to 10,000 (threads in this stage), not 10001"),
        ("PRICE_THREADS", "9" * 5000, 9, "instances: must be a positive integer or auto, not '999"),
        ("MAXSIZE", "", 4, "queues[0] (Numbers).maxsize: must be a positive integer, not '' (from ${MAXSIZE})"),
        ("BATCH", "2.5", 17, "batch_size: must be a positive integer, not '2.5' (from ${BATCH})"),
        ("RESTARTS", "-1", 19, "max_restarts: must be a whole number >= 0, not '-1' (from ${RESTARTS})"),
        ("TIMEOUT", "0", 18, "batch_timeout: must be a positive number, not '0' (from ${TIMEOUT})"),
        ("TIMEOUT", "1e999", 18, "batch_timeout: must be a positive number, not '1e999'"),
        ("TIMEOUT", "inf", 18, "batch_timeout: must be a positive number, not 'inf'"),
        ("INTERVAL", "nan", 1, "monitor_interval: must be a positive number, not 'nan' (from ${INTERVAL})"),
    ],
)
def test_a_bad_number_from_a_variable_names_the_key_the_value_and_the_variable(tmp_path, variable, value, line, fragment):
    path = _write(tmp_path, NUMERIC_FROM_VARIABLES)
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path, env={**NUMERIC_ENV, variable: value})
    message = str(caught.value)
    assert "\n" not in message and len(message) < 700
    assert message.startswith(f"{path}:{line}: "), message
    assert fragment in message, message


def test_a_literal_string_is_still_not_a_number(tmp_path):
    # Only a variable's text is read as a number: a quoted literal is a mistake worth naming.
    path = _write(tmp_path, GOOD.replace("    instances: 20\n", '    instances: "20"\n'))
    with pytest.raises(PipelineConfigError, match=r"instances: must be a positive integer or auto, not '20'$"):
        load_pipeline(path, env={})


def test_a_merged_number_from_a_variable_reads_as_one_until_overridden(tmp_path):
    merged = "    <<: {instances: '${N}'}\n"
    text = NUMERIC_FROM_VARIABLES.replace("    instances: ${PRICE_THREADS:-20}\n", merged)
    assert load_pipeline(_write(tmp_path, text), env={**NUMERIC_ENV, "N": "5"}).stages[0].instances == 5
    # The key written in the mapping wins, with its own kind: a quoted literal is not a number.
    text = NUMERIC_FROM_VARIABLES.replace("    instances: ${PRICE_THREADS:-20}\n", merged + '    instances: "3"\n')
    with pytest.raises(PipelineConfigError, match=r"instances: must be a positive integer or auto, not '3'$"):
        load_pipeline(_write(tmp_path, text), env={**NUMERIC_ENV, "N": "5"})
