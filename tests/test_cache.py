"""The data cache: a hit gives the very split a reload would, and anything doubtful is a miss."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from churnml import cache, prepare
from churnml.config import ConfigError, DataConfig, SweepConfig
from churnml.digests import frame_digest
from churnml.schema import DataValidationError
from churnml.synthetic import generate_bank_churn


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    generate_bank_churn(300, seed=3).to_csv(path, index=False)
    return path


def config_for(path: Path | None, **overrides) -> SweepConfig:
    data = DataConfig(path=path) if path else DataConfig(synthetic_rows=300, synthetic_seed=2)
    # Small data on purpose (these tests are about the cache): lower the enough-rows floor.
    return SweepConfig.model_validate({"data": data, "min_class_rows": 5, **overrides})


def fresh(config: SweepConfig) -> prepare.PreparedData:
    clean = prepare.validate(prepare.load_raw(config.data), config)
    return prepare.split(clean, config, digest=frame_digest(clean))


def assert_same(got: prepare.PreparedData, want: prepare.PreparedData) -> None:
    pd.testing.assert_frame_equal(got.train, want.train)  # values and dtypes, object included
    pd.testing.assert_frame_equal(got.test, want.test)
    for name in ("target", "encoded_features", "digest", "source", "path", "rows"):
        assert getattr(got, name) == getattr(want, name), name
    assert got.churn_rate == pytest.approx(want.churn_rate)
    assert got.feature_columns == want.feature_columns


def entries(folder: Path) -> list[Path]:
    return [p for p in folder.iterdir() if p.is_dir()] if folder.exists() else []


@pytest.mark.parametrize("use_file", [True, False], ids=["csv", "built-in"])
def test_miss_then_hit_gives_the_same_split(tmp_path, csv_file, use_file):
    config = config_for(csv_file if use_file else None)
    folder = tmp_path / "cache"
    first, hit = cache.prepare_data(config, folder)
    assert not hit
    assert len(entries(folder)) == 1
    second, hit = cache.prepare_data(config, folder)
    assert hit
    assert_same(first, fresh(config))
    assert_same(second, fresh(config))


def test_same_content_at_another_path_hits_and_names_the_new_path(tmp_path, csv_file):
    folder = tmp_path / "cache"
    cache.prepare_data(config_for(csv_file), folder)
    copy = tmp_path / "elsewhere.csv"
    copy.write_bytes(csv_file.read_bytes())
    prepared, hit = cache.prepare_data(config_for(copy), folder)
    assert hit
    assert prepared.path == str(copy.resolve())
    assert prepared.source == str(copy)


def test_changed_file_content_misses(tmp_path, csv_file):
    folder = tmp_path / "cache"
    config = config_for(csv_file)
    cache.prepare_data(config, folder)
    generate_bank_churn(300, seed=4).to_csv(csv_file, index=False)
    prepared, hit = cache.prepare_data(config, folder)
    assert not hit
    assert_same(prepared, fresh(config))
    assert len(entries(folder)) == 2


@pytest.mark.parametrize(
    "change",
    [
        {"seed": 7},
        {"test_size": 0.3},
        {"cv_folds": 4},
        {"data": {"synthetic_rows": 300, "synthetic_seed": 2, "sample_rows": 200}},
        {"data": {"synthetic_rows": 301, "synthetic_seed": 2}},
        {"data": {"synthetic_rows": 300, "synthetic_seed": 5}},
    ],
)
def test_changed_split_settings_miss(tmp_path, change):
    folder = tmp_path / "cache"
    cache.prepare_data(config_for(None), folder)
    changed = config_for(None, **change)
    prepared, hit = cache.prepare_data(changed, folder)
    assert not hit
    assert_same(prepared, fresh(changed))


def test_a_changed_target_column_misses(tmp_path):
    frame = generate_bank_churn(300, seed=3)
    frame["Churned"] = 1 - frame["Exited"]
    path = tmp_path / "two-targets.csv"
    frame.to_csv(path, index=False)
    folder = tmp_path / "cache"
    cache.prepare_data(config_for(path), folder)
    other = SweepConfig(data=DataConfig(path=path, target="Churned"))
    prepared, hit = cache.prepare_data(other, folder)
    assert not hit
    assert prepared.target == "Churned"


def test_the_search_space_is_not_in_the_key_but_is_still_checked(tmp_path):
    folder = tmp_path / "cache"
    cache.prepare_data(config_for(None), folder)
    narrower = config_for(None, search_space={"n_estimators": {"low": 10, "high": 20}})
    assert cache.prepare_data(narrower, folder)[1]
    with pytest.raises(ConfigError, match="k_max"):
        cache.prepare_data(config_for(None, search_space={"k_max": 99}), folder)


@pytest.mark.parametrize(
    "damage",
    [
        lambda entry: (entry / "train.feather").write_bytes(
            (entry / "train.feather").read_bytes()[:100]
        ),
        lambda entry: (entry / "test.feather").write_bytes(b"not arrow at all"),
        lambda entry: (entry / "meta.json").write_text("{truncated"),
        lambda entry: (entry / "test.feather").unlink(),
    ],
    ids=["truncated", "garbage", "bad-meta", "missing-file"],
)
def test_a_damaged_entry_is_a_miss_and_is_rewritten(tmp_path, csv_file, damage):
    folder = tmp_path / "cache"
    config = config_for(csv_file)
    cache.prepare_data(config, folder)
    (entry,) = entries(folder)
    damage(entry)
    prepared, hit = cache.prepare_data(config, folder)
    assert not hit
    assert_same(prepared, fresh(config))
    assert cache.prepare_data(config, folder)[1]  # the reload wrote a good entry


def test_an_edited_but_readable_file_fails_its_checksum(tmp_path, csv_file):
    folder = tmp_path / "cache"
    config = config_for(csv_file)
    prepared, _ = cache.prepare_data(config, folder)
    (entry,) = entries(folder)
    edited = prepared.train.copy()
    edited.loc[0, "Age"] = 99.0  # valid Arrow, wrong data: only the checksum can tell
    edited.to_feather(entry / "train.feather")
    again, hit = cache.prepare_data(config, folder)
    assert not hit
    assert again.train.loc[0, "Age"] == prepared.train.loc[0, "Age"]


def test_bad_data_is_never_cached(tmp_path):
    path = tmp_path / "bad.csv"
    frame = generate_bank_churn(300, seed=3)
    frame["Exited"] = 1  # one class
    frame.to_csv(path, index=False)
    folder = tmp_path / "cache"
    with pytest.raises(DataValidationError, match="single class"):
        cache.prepare_data(config_for(path), folder)
    assert entries(folder) == []


def test_a_missing_file_is_reported_by_the_loader(tmp_path):
    with pytest.raises(DataValidationError, match="file not found"):
        cache.prepare_data(config_for(tmp_path / "nope.csv"), tmp_path / "cache")


def test_old_entries_are_evicted(tmp_path, monkeypatch):
    monkeypatch.setattr(cache, "MAX_ENTRIES", 2)
    folder = tmp_path / "cache"
    for seed in range(4):
        cache.prepare_data(config_for(None, seed=seed), folder)
    assert len(entries(folder)) == 2
    assert cache.prepare_data(config_for(None, seed=3), folder)[1]  # the newest stayed


def test_an_entry_of_another_version_misses(tmp_path, csv_file):
    folder = tmp_path / "cache"
    config = config_for(csv_file)
    cache.prepare_data(config, folder)
    (entry,) = entries(folder)
    meta = json.loads((entry / "meta.json").read_text())
    (entry / "meta.json").write_text(json.dumps({**meta, "version": -1}))
    assert not cache.prepare_data(config, folder)[1]
