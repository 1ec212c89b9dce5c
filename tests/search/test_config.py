from pathlib import Path

import pytest

from search.config import Config, load_config
from search.errors import ConfigError


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text)
    return path


def test_repository_config_yaml_is_the_defaults():
    repo = Path(__file__).resolve().parents[2]
    assert load_config(repo / "config.yaml", environ={}) == Config()


def test_file_then_environment_then_flags(tmp_path):
    path = write(tmp_path, "model:\n  name: offline\n  batch_size: 8\ndata_dir: /tmp/a\n")
    cfg = load_config(path, environ={})
    assert (cfg.model.name, cfg.model.batch_size, cfg.data_dir) == ("offline", 8, Path("/tmp/a"))

    env = {"PIXSEEK_MODEL_BATCH_SIZE": "16", "PIXSEEK_DATA_DIR": "/tmp/b"}
    cfg = load_config(path, environ=env)
    assert (cfg.model.batch_size, cfg.data_dir) == (16, Path("/tmp/b"))

    flags = {"model.batch_size": 4, "model.name": "ViT-B/32"}
    cfg = load_config(path, overrides=flags, environ=env)
    assert (cfg.model.batch_size, cfg.model.name) == (4, "ViT-B/32")


def test_environment_lists_and_short_model_name(tmp_path):
    env = {"PIXSEEK_LIBRARY_ROOTS": "[/photos/a, /photos/b]", "PIXSEEK_MODEL": "offline"}
    cfg = load_config(write(tmp_path, "{}"), environ=env)
    assert cfg.library.roots == [Path("/photos/a"), Path("/photos/b")]
    assert cfg.model.name == "offline"


def test_serve_threads_from_file_and_environment(tmp_path):
    assert Config().serve.threads == 8
    assert load_config(write(tmp_path, "serve:\n  threads: 4\n"), environ={}).serve.threads == 4
    env = {"PIXSEEK_SERVE_THREADS": "16"}
    assert load_config(write(tmp_path, "{}"), environ=env).serve.threads == 16


def test_pixseek_config_variable_names_the_file(tmp_path):
    path = write(tmp_path, "search:\n  default_k: 7\n")
    assert load_config(environ={"PIXSEEK_CONFIG": str(path)}).search.default_k == 7


def test_default_database_is_sqlite_in_the_data_dir(tmp_path):
    cfg = load_config(write(tmp_path, f"data_dir: {tmp_path}/d\n"), environ={})
    assert cfg.db_url == f"sqlite:///{tmp_path}/d/pixseek.db"


@pytest.mark.parametrize(
    ("text", "env", "expected"),
    [
        ("model:\n  batch_size: 0\n", {}, "model.batch_size"),
        ("model:\n  batch_size: lots\n", {}, "model.batch_size"),
        ("model:\n  device: gpu\n", {}, "'auto', 'cpu', 'cuda' or 'mps'"),
        ("model:\n  nmae: x\n", {}, "unknown key 'model.nmae'; allowed here: model.name"),
        ("colour: red\n", {}, "unknown key 'colour'"),
        ("index:\n  kind: annoy\n", {}, "index.kind"),
        ("indexer:\n  decode_workers: -1\n", {}, "indexer.decode_workers"),
        ("serve:\n  threads: 0\n", {}, "serve.threads"),
        ("{}", {"PIXSEEK_SERVE_THREADS": "65"}, "environment: serve.threads"),
        ("- a list\n", {}, "must be a mapping"),
        ("model: [unclosed\n", {}, "not valid YAML"),
        ("{}", {"PIXSEEK_MODEL_BATCH_SIZE": "-3"}, "environment: model.batch_size"),
        ("{}", {"PIXSEEK_BATCHSIZE": "3"}, "PIXSEEK_BATCHSIZE is not a pixseek setting"),
    ],
)
def test_invalid_values_are_one_clear_message(tmp_path, text, env, expected):
    with pytest.raises(ConfigError) as err:
        load_config(write(tmp_path, text), environ=env)
    message = str(err.value)
    assert expected in message
    assert "\n" not in message


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", environ={})
