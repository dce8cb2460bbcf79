"""A file a config names is found at load, from the working directory or beside the config.

Before, ``models.evaluation.truth`` was read after the whole replay: a config used from
another directory ran to the end and then exited with status 3.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from audienceflow.operators.config import ConfigError
from audienceflow.operators.settings import Settings


def _config(folder: Path, truth: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    cfg = folder / "cfg.yaml"
    cfg.write_text(f"models:\n  evaluation:\n    truth: {truth}\n")
    return cfg


@pytest.mark.timeout(30)
def test_a_relative_path_is_read_from_the_working_directory_first(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "truth.json").write_text("{}")
    (tmp_path / "conf" / "truth.json").parent.mkdir()
    (tmp_path / "conf" / "truth.json").write_text("{}")
    cfg = _config(tmp_path / "conf", "truth.json")
    monkeypatch.chdir(tmp_path)
    assert Settings.load(cfg, environ={}).models.truth == "truth.json"


@pytest.mark.timeout(30)
def test_else_beside_the_config_that_names_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path / "conf", "truth.json")
    (tmp_path / "conf" / "truth.json").write_text("{}")
    monkeypatch.chdir(tmp_path)  # no truth.json here
    assert Settings.load(cfg, environ={}).models.truth == str(tmp_path / "conf" / "truth.json")


@pytest.mark.timeout(30)
def test_a_missing_file_is_a_config_error_at_load(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg = _config(tmp_path / "conf", "nope.json")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"cfg\.yaml:3: models\.evaluation\.truth: no such file"):
        Settings.load(cfg, environ={})
    # from the environment there is no config file to look beside
    env = {"AUDIENCEFLOW_MODELS__EVALUATION__TRUTH": "nope.json"}
    with pytest.raises(ConfigError, match="no such file in the working directory; got"):
        Settings.load(None, environ=env)


@pytest.mark.timeout(60)
def test_the_demo_config_from_another_directory_fails_at_load_naming_the_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo names its truth file from the repository's root (so a copy of it edited
    there keeps working); from elsewhere that is an error before any data moves."""
    root = Path(__file__).resolve().parent.parent
    demo = root / "examples" / "demo.yaml"
    monkeypatch.chdir(root)
    truth = Settings.load(demo, environ={}).models.truth
    assert truth == "examples/stream.truth.json" and Path(truth).is_file()
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"demo\.yaml:6: models\.evaluation\.truth: no such file"):
        Settings.load(demo, environ={})
