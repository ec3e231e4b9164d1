"""Hostile pipeline files: each is refused in one located line, quickly and in bounded memory."""

from __future__ import annotations

import time
import tracemalloc
from pathlib import Path

import pytest

from engine import PipelineConfig, PipelineConfigError, QueueConfig, StageConfig, load_pipeline
from engine.config import MAX_INSTANCES, MAX_THREADS
from engine.yaml_source import MAX_FILE_BYTES
from tests.engine import workers

W = "tests.engine.workers"
STAGES = f"""\
workers:
  - {{name: Src, location: {W}, class: Range, input_values: [[0, 5]], output_queues: q}}
  - {{name: Sink, location: {W}, class: Collect, input_queue: q, params: {{key: k}}}}
"""
GOOD = "queues: [{name: q}]\n" + STAGES


def _refused(
    tmp_path: Path, text: str | bytes, env: dict[str, str] | None = None, *, trace: bool = True
) -> tuple[str, Path]:
    """Load ``text`` as a pipeline file; return the one-line error, checking time and (if ``trace``) memory."""
    path = tmp_path / "pipeline.yaml"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    if trace:  # tracing makes loading some 3x slower; a plain long file skips it
        tracemalloc.start()
    started = time.monotonic()
    try:
        with pytest.raises(PipelineConfigError) as caught:
            load_pipeline(path, env=env or {})
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert time.monotonic() - started < 20  # generous: it must end, not hang (about 2 s on a busy machine)
    assert peak < 200_000_000, f"peak {peak:,} bytes"
    message = str(caught.value)
    assert "\n" not in message and len(message) < 1200, message
    assert message.startswith(str(path)), message
    return message, path


def _billion_laughs(levels: int = 9) -> str:
    lines = ["lol0: &lol0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    for level in range(1, levels + 1):
        lines.append(f"lol{level}: &lol{level} [" + ", ".join([f"*lol{level - 1}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize(
    "text, fragment",
    [
        # Ten levels of ten: a billion strings if expanded. As input_values, params, or any key.
        (GOOD.replace("[[0, 5]]", "*lol9").replace("queues", _billion_laughs() + "queues", 1),
         "more than 50,000 values (aliases counted as what they repeat)"),
        (_billion_laughs() + GOOD, "more than 50,000 values"),
        # Quadratic blow-up through merge keys instead of sequences.
        ("a: &a {" + ", ".join(f"k{i}: {i}" for i in range(300)) + "}\n"
         + "".join(f"b{i}: {{<<: *a}}\n" for i in range(300)) + GOOD, "more than 50,000 values"),
        ("x: " + "[" * 100_000 + "]" * 100_000 + "\n", "values nest more than 50 deep"),
        ("x: " + "{a: " * 5000 + "1" + "}" * 5000 + "\n", "values nest more than 50 deep"),
        ("x:\n" + "- " * 3000 + "1\n", "values nest more than 50 deep"),
        # Depth reached through aliases only: each level adds a little nesting.
        ("".join(f"d{i}: &d{i} [[[[[*d{i - 1}]]]]]\n" if i else "d0: &d0 [1]\n" for i in range(30)) + GOOD,
         "values nest more than 50 deep (aliases included)"),
        ("x: &a [1, *a]\n" + GOOD, ":1: an alias refers to the value that contains it"),
        ("x: [" + "1," * 200_000 + "1]\n", "more than 50,000 values"),
    ],
    ids=["laughs-as-input", "laughs-unused", "merge-keys", "deep-flow", "deep-mapping", "deep-block",
         "deep-aliases", "self-alias", "many-values"],
)
def test_alias_bombs_and_deep_nesting_are_refused_in_bounded_time_and_memory(tmp_path, text, fragment):
    message, _ = _refused(tmp_path, text, trace=len(text) < 100_000)
    assert fragment in message, message


def test_a_huge_file_is_refused_without_being_read(tmp_path):
    path = tmp_path / "pipeline.yaml"
    with path.open("wb") as file:  # 100 MB, sparse: cheap to make, and reading it would show
        file.write(GOOD.encode())
        file.truncate(100_000_000)
    tracemalloc.start()
    with pytest.raises(PipelineConfigError) as caught:
        load_pipeline(path)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    assert peak < 5 * MAX_FILE_BYTES
    assert str(caught.value) == f"{path}: the file is larger than 1,000,000 bytes; a pipeline file is a few KB"


@pytest.mark.parametrize(
    "text, expected",
    [
        (GOOD.replace("Sink", "Si\0nk"), ":4: a NUL byte at column 14; a pipeline file is plain text"),
        (GOOD.replace("Sink", "Si\x1bnk"), ":4: control character U+001B at column 14"),
        (GOOD.replace("Sink", "Si\x7fnk"), ":4: control character U+007F at column 14"),
        (GOOD.encode().replace(b"Sink", b"Si\xffnk"), ":4: not UTF-8 text: byte 0xff at column 14"),
    ],
    ids=["NUL", "escape", "DEL", "not-utf8"],
)
def test_control_characters_and_bad_bytes_name_the_line(tmp_path, text, expected):
    message, path = _refused(tmp_path, text)
    assert message == f"{path}{expected}" or message.startswith(f"{path}{expected}"), message


def test_the_pipeline_file_must_be_a_regular_file(tmp_path):
    import os

    fifo = tmp_path / "pipe.yaml"
    os.mkfifo(fifo)  # opening it would block until someone writes
    with pytest.raises(PipelineConfigError, match="is not a regular file"):
        load_pipeline(fifo)


@pytest.mark.parametrize(
    "instances, fragment",
    [
        (1_000_000, f"instances: must be from 1 to {MAX_INSTANCES:,} (threads in this stage), not 1000000"),
        (10 ** 30, "instances: must be from 1 to 10,000"),
        ("1" * 5000, "an integer too long to read"),
    ],
)
def test_absurd_instances_are_refused_before_any_thread_starts(tmp_path, instances, fragment):
    text = GOOD.replace("class: Collect,", f"class: Collect, instances: {instances},")
    message, path = _refused(tmp_path, text)
    assert message.startswith(f"{path}:4: ") and fragment in message, message


def test_the_total_thread_limit(tmp_path):
    stages = "".join(
        f"  - {{name: S{i}, location: {W}, class: Echo, instances: {MAX_INSTANCES}, input_queue: q{i},"
        f" output_queues: q{i + 1}}}\n"
        for i in range(2)
    )
    text = (
        "queues: [{name: q0}, {name: q1}, {name: q2}]\nworkers:\n"
        f"  - {{name: Src, location: {W}, class: Range, input_values: [[0, 5]], output_queues: q0}}\n"
        + stages + f"  - {{name: Sink, location: {W}, class: Collect, input_queue: q2, params: {{key: k}}}}\n"
    )
    message, path = _refused(tmp_path, text)
    assert message == (
        f"{path}:2: workers: the stages have 20,002 threads in all; at most {MAX_THREADS:,} are allowed"
    )


def test_a_queue_no_stage_uses_is_refused_at_its_line(tmp_path):
    message, path = _refused(tmp_path, "queues:\n  - name: q\n  - name: spare\n" + STAGES)
    assert message.startswith(f"{path}:3: queue spare: queue 'spare' is declared but no stage uses it"), message


@pytest.mark.parametrize(
    "name, fragment",
    [
        ("../../etc", "holds a path separator or '..'"),
        ("a/b", "holds a path separator"),
        ("a\\\\b", "holds a path separator"),
        ("..", "holds a path separator or '..'"),
        ("evil\\x1b[31mred", "holds the control character U+001B"),
        ("line\\nbreak", "holds the control character U+000A"),
        ("x" * 5000, "is 5,000 characters long; at most 100 are allowed"),
    ],
)
def test_pipeline_names_that_could_escape_the_run_directory_are_refused(tmp_path, name, fragment):
    message, path = _refused(tmp_path, f'name: "{name}"\n' + GOOD)
    assert message.startswith(f"{path}:1: name: the pipeline name ") and fragment in message, message


def test_a_variable_cannot_inject_structure_or_bypass_a_limit(tmp_path):
    # The value is text put into a string after parsing: never a mapping. A numeric key reads
    # it as a number and holds it to the same limits as a literal.
    text = 'name: "${NAME}"\n' + GOOD.replace("class: Collect,", 'class: Collect, instances: "${N}",')
    message, path = _refused(tmp_path, text, env={"NAME": "ok", "N": "1000000"})
    assert "instances: must be from 1 to 10,000 (threads in this stage), not 1000000" in message
    message, path = _refused(tmp_path, 'name: "${NAME}"\n' + GOOD, env={"NAME": "../../x\n  evil: {a: 1}"})
    assert "the pipeline name" in message and "path separator" in message
    message, path = _refused(tmp_path, 'name: "${A}${A}"\n' + GOOD, env={"A": "x" * 600_000})
    assert "a string is longer than 1,000,000 characters once ${VAR} values are put in" in message
    # Not expanded twice: a value that looks like a reference stays as it is.
    path = tmp_path / "ok.yaml"
    path.write_text('name: "${A}"\n' + GOOD.replace("[[0, 5]]", '["${B}"]'))
    config = load_pipeline(path, env={"A": "p", "B": "${A}"})
    assert config.stages[0].input_values == ("${A}",)


def test_merge_keys_may_override_what_they_merge(tmp_path):
    path = tmp_path / "pipeline.yaml"
    path.write_text(
        "queues: [{name: q}, {name: r}, {name: s}]\n"
        "workers:\n"
        f"  - {{name: Src, location: {W}, class: Range, input_values: [[0, 5]], output_queues: q}}\n"
        f"  - &mid {{name: Mid, location: {W}, class: Echo, instances: 2, input_queue: q, output_queues: r}}\n"
        "  - {<<: *mid, name: Mid2, instances: 3, input_queue: r, output_queues: s}\n"
        f"  - {{name: Sink, location: {W}, class: Collect, input_queue: s, params: {{key: k}}}}\n"
    )
    config = load_pipeline(path)
    assert config.stage("Mid2").instances == 3 and config.stage("Mid2").worker_class is workers.Echo
    path.write_text(path.read_text().replace("instances: 3,", "instances: 3, instances: 4,"))
    with pytest.raises(PipelineConfigError, match=":5: duplicate key 'instances'"):
        load_pipeline(path)  # a key written twice by the mapping itself is still a mistake


def test_too_many_stages_are_refused_and_the_limit_itself_runs(tmp_path):
    from engine import PipelineExecutor
    from engine.config import MAX_STAGES

    def chain(length: int) -> PipelineConfig:
        stages = [StageConfig("S0", workers.Range, input_values=([0, 20],), output_queues=("q1",))]
        stages += [StageConfig(f"S{i}", workers.Echo, input_queue=f"q{i}", output_queues=(f"q{i + 1}",))
                   for i in range(1, length - 1)]
        stages.append(StageConfig("Sink", workers.Collect, input_queue=f"q{length - 1}", params={"key": tmp_path.name}))
        return PipelineConfig(queues={f"q{i}": QueueConfig(f"q{i}") for i in range(1, length)}, stages=tuple(stages))

    with pytest.raises(PipelineConfigError, match=f"workers: {MAX_STAGES + 1} stages; at most {MAX_STAGES} are allowed"):
        chain(MAX_STAGES + 1).check()
    report = PipelineExecutor(chain(MAX_STAGES), run_dir=tmp_path, on_status=lambda s: None).run()
    assert report.ok and sorted(workers.collected(tmp_path.name)) == list(range(20))
