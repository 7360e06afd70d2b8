from pathlib import Path

import pytest

from videogen.config import (
    Config,
    ConfigError,
    DataConfig,
    apply_overrides,
    from_dict,
    load_config,
    save_config,
    to_dict,
)
from videogen.registry import build_method


def test_defaults_round_trip(tmp_path):
    cfg = Config()
    again = from_dict(Config, to_dict(cfg))
    assert again == cfg


def test_unknown_key_names_the_key():
    with pytest.raises(ConfigError, match=r"unknown config key 'train\.lrr'"):
        from_dict(Config, {"train": {"lrr": 1.0}})


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match=r"train\.steps: expected an integer"):
        from_dict(Config, {"train": {"steps": "many"}})
    with pytest.raises(ConfigError, match=r"diffusion\.prediction: 'noise' is not one of"):
        from_dict(Config, {"diffusion": {"prediction": "noise"}})
    with pytest.raises(ConfigError, match=r"train\.betas: expected 2 values"):
        from_dict(Config, {"train": {"betas": [0.9]}})


def test_ints_become_floats_but_bools_are_not_numbers():
    cfg = from_dict(Config, {"train": {"lr": 1, "grad_clip": None}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.train.grad_clip is None
    with pytest.raises(ConfigError):
        from_dict(DataConfig, {"frames": True})


def test_overrides_parse_yaml_values():
    data = apply_overrides({}, ["train.lr=3e-4", "data.name=bair", "train.betas=[0.5, 0.9]"])
    cfg = from_dict(Config, data)
    assert cfg.train.lr == 3e-4 and cfg.data.name == "bair" and cfg.train.betas == (0.5, 0.9)
    with pytest.raises(ConfigError, match="must look like"):
        apply_overrides({}, ["train.lr"])


def test_load_config_checks_file_and_model_section(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: nope\n")
    with pytest.raises(ConfigError, match="unknown method 'nope'"):
        build_method(load_config(bad))
    broken = tmp_path / "broken.yaml"
    broken.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(broken)


def test_save_config_is_loadable(tmp_path):
    cfg = from_dict(Config, {"method": "mcvd", "train": {"steps": 7}})
    path = tmp_path / "c.yaml"
    save_config(cfg, path)
    assert "steps: 7" in path.read_text()


def test_config_and_registry_import_no_method():
    """Layering: config knows nothing of methods; the registry and checkpoints import a method
    module only when one is asked for (so no import cycle can form)."""
    import subprocess
    import sys

    code = (
        "import sys, videogen.config, videogen.registry, videogen.checkpoint; "
        "print(sorted(m for m in sys.modules if m.startswith('videogen.methods.')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    import videogen.config

    source = Path(videogen.config.__file__).read_text()
    assert "import" not in " ".join(
        line for line in source.splitlines() if "methods" in line or "registry" in line
    )
