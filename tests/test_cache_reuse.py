"""The data cache in one process: a split still held is handed out again (the command line's
data check, then the flow's prepare-data), sharing its frames; anything changed is read again."""

from __future__ import annotations

import gc
import shutil
from pathlib import Path

import pytest

from churnml import cache
from churnml.config import ConfigError, DataConfig, SweepConfig
from churnml.synthetic import generate_bank_churn


@pytest.fixture
def csv_file(tmp_path: Path) -> Path:
    path = tmp_path / "churn.csv"
    generate_bank_churn(300, seed=3).to_csv(path, index=False)
    return path


def config_for(path: Path, **overrides) -> SweepConfig:
    return SweepConfig.model_validate(
        {"data": DataConfig(path=path), "min_class_rows": 5, **overrides}
    )


def refuse_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_read(*args, **kwargs):
        raise AssertionError("the entry was read again")

    monkeypatch.setattr(cache, "load", no_read)
    monkeypatch.setattr(cache.prepare, "load_raw", no_read)


@pytest.mark.parametrize("first_was_a_hit", [False, True], ids=["after-a-miss", "after-a-hit"])
def test_a_held_split_is_handed_out_again_with_the_same_frames(
    tmp_path, csv_file, monkeypatch, first_was_a_hit
):
    folder, config = tmp_path / "cache", config_for(csv_file)
    if first_was_a_hit:
        cache.prepare_data(config, folder)  # stored, then let go
        gc.collect()
    held, hit = cache.prepare_data(config, folder)
    assert hit == first_was_a_hit
    refuse_reads(monkeypatch)

    again, hit = cache.prepare_data(config, folder)

    assert hit
    assert again.train is held.train and again.test is held.test  # one copy in memory
    assert again.digest == held.digest and again.path == held.path


def test_a_split_let_go_is_read_from_its_entry(tmp_path, csv_file, monkeypatch):
    folder, config = tmp_path / "cache", config_for(csv_file)
    held, _ = cache.prepare_data(config, folder)
    del held
    gc.collect()
    reads = []
    real_load = cache.load
    monkeypatch.setattr(cache, "load", lambda *a, **k: reads.append(1) or real_load(*a, **k))

    _, hit = cache.prepare_data(config, folder)

    assert hit and reads == [1]  # nothing held it: read from disk, nothing kept in memory


def test_a_changed_entry_is_read_and_checked_again(tmp_path, csv_file):
    folder, config = tmp_path / "cache", config_for(csv_file)
    held, _ = cache.prepare_data(config, folder)
    (entry,) = [p for p in folder.iterdir() if p.is_dir()]
    edited = held.train.copy()
    edited.loc[0, "Age"] = 99.0
    edited.to_feather(entry / "train.feather")

    again, hit = cache.prepare_data(config, folder)

    assert not hit  # the edited file failed its checksum: reloaded from the data
    assert again.train is not held.train
    assert again.train.loc[0, "Age"] == held.train.loc[0, "Age"]


def test_the_same_bytes_at_another_path_share_frames_but_name_their_path(tmp_path, csv_file):
    folder = tmp_path / "cache"
    held, _ = cache.prepare_data(config_for(csv_file), folder)
    copy = tmp_path / "copy.csv"
    shutil.copy(csv_file, copy)

    again, hit = cache.prepare_data(config_for(copy), folder)

    assert hit and again.train is held.train
    assert again.path == str(copy.resolve()) and again.source == str(copy)


def test_another_cache_folder_is_not_answered_from_memory(tmp_path, csv_file):
    config = config_for(csv_file)
    held, _ = cache.prepare_data(config, tmp_path / "one")

    again, hit = cache.prepare_data(config, tmp_path / "two")

    assert not hit and again.train is not held.train


def test_a_held_split_is_still_checked_against_the_search_space(tmp_path, csv_file):
    folder = tmp_path / "cache"
    held, _ = cache.prepare_data(config_for(csv_file), folder)
    assert held is not None

    with pytest.raises(ConfigError, match="k_max"):
        cache.prepare_data(config_for(csv_file, search_space={"k_max": 99}), folder)
