"""Data too small to judge a model is refused before any store is touched, with the rule, the
numbers found and the setting that lowers the floor."""

from __future__ import annotations

import pytest

from churnml import cache, prepare
from churnml.config import ConfigError, DataConfig, SweepConfig, parse_config
from churnml.schema import DataValidationError
from churnml.synthetic import generate_bank_churn


def tiny_file(tmp_path, rows=30):
    path = tmp_path / "tiny.csv"
    generate_bank_churn(rows, seed=1).to_csv(path, index=False)
    return path


def test_a_30_row_file_is_refused_with_rule_numbers_and_setting(tmp_path):
    config = SweepConfig(data=DataConfig(path=tiny_file(tmp_path)), cv_folds=3)
    folder = tmp_path / "cache"
    with pytest.raises(DataValidationError) as caught:
        cache.prepare_data(config, folder)
    text = str(caught.value)
    assert "\n" not in text
    assert text.startswith(f"{tmp_path / 'tiny.csv'}: too few rows to judge a model (30 rows")
    assert "in the holdout" in text and "per CV fold" in text
    assert "min_class_rows=10" in text and "lower min_class_rows on purpose" in text
    assert not folder.exists() or not any(folder.iterdir())  # nothing cached


def test_the_floor_can_be_lowered_on_purpose(tmp_path):
    config = SweepConfig(data=DataConfig(path=tiny_file(tmp_path, 60)), cv_folds=2)
    with pytest.raises(DataValidationError, match="too few rows"):
        cache.prepare_data(config, tmp_path / "cache")
    lowered = config.model_copy(update={"min_class_rows": 1})
    prepared, cached = cache.prepare_data(lowered, tmp_path / "cache")
    assert not cached and prepared.rows == 60


def test_a_cached_split_is_checked_against_a_raised_floor(tmp_path):
    config = SweepConfig(data=DataConfig(synthetic_rows=600), cv_folds=3)
    folder = tmp_path / "cache"
    assert cache.prepare_data(config, folder)[1] is False
    assert cache.prepare_data(config, folder)[1] is True
    with pytest.raises(DataValidationError, match=r"min_class_rows=500"):
        cache.prepare_data(config.model_copy(update={"min_class_rows": 500}), folder)


def test_the_default_data_is_big_enough():
    config = SweepConfig()
    clean = prepare.validate(prepare.load_raw(config.data), config)
    prepare.split(clean, config, digest="d")


def test_min_class_rows_is_validated():
    with pytest.raises(ConfigError, match=r"config\.min_class_rows"):
        parse_config({"min_class_rows": 0})
