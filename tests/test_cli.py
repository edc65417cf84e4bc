"""The command line's own errors: clear messages and exit codes, never a traceback."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bridge import cli
from tests.helpers import config_data, seed_alarm, write_config


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return write_config(tmp_path / "c.yaml", config_data(f"sqlite:///{tmp_path / 's.db'}"))


def test_render_into_a_pipe_closed_early_ends_quietly(config: Path, tmp_path: Path) -> None:
    long = seed_alarm(exception_spec="磁盘满了\n" * 20_000)  # more than a pipe holds
    (tmp_path / "alarm.json").write_text(json.dumps(long), encoding="utf-8")
    command = [sys.executable, "-m", "bridge", "render", "--config", str(config), str(tmp_path / "alarm.json")]
    with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as render:
        assert render.stdout is not None and render.stderr is not None
        render.stdout.readline()  # `| head -1`
        render.stdout.close()
        err = render.stderr.read().decode()
    assert render.returncode == 0 and "Traceback" not in err and "BrokenPipe" not in err


def test_send_help_shows_where_it_posts(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["send", "--help"])
    assert "(default: http://127.0.0.1:8080/alarm_v2)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read"),
        ("{", "is not JSON"),
        ("[1]", "expected a JSON object of the alarm's fields"),
        ('{"id": "chenmin", "level": 3}', "expected a JSON object of the alarm's fields"),
        ('{"id": "chenmin", "level": "3"}', "the alarm lacks dep, env, alert_level, alert_time, alert_business"),
    ],
)
def test_render_names_what_is_wrong_with_the_alarm_file(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str | None, expected: str
) -> None:
    if content is not None:
        (tmp_path / "alarm.json").write_text(content, encoding="utf-8")
    assert cli.main(["render", "--config", str(config), str(tmp_path / "alarm.json")]) == 2
    err = capsys.readouterr().err
    assert expected in err and "Traceback" not in err
