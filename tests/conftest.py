"""Shared fixtures: tiny local models and data files; the shared real data when present."""
import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from tiny import make_reviews, make_tiny_model, write_csv  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
DATA_DIR = Path(os.environ.get("DISTILL_DATA_DIR", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def _tiny_model_master(tmp_path_factory):
    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


@pytest.fixture
def tiny_model_dir(_tiny_model_master, tmp_path):
    """A private copy of a 2-layer, 32-wide binary BERT classifier (labels negative/positive)."""
    return Path(shutil.copytree(_tiny_model_master, tmp_path / "tiny-model"))


@pytest.fixture
def reviews_csv(tmp_path):
    """Train and eval CSVs (text,label) of learnable synthetic reviews."""
    train = write_csv(tmp_path / "train.csv", make_reviews(80, seed=1))
    dev = write_csv(tmp_path / "dev.csv", make_reviews(40, seed=2))
    return train, dev


@pytest.fixture(scope="session")
def shared_data():
    """../shared/data (or $DISTILL_DATA_DIR); tests needing it skip with the reason when absent."""
    if not (DATA_DIR / "sst2" / "dev.tsv").exists():
        pytest.skip(f"shared data not found at {DATA_DIR} (set DISTILL_DATA_DIR)")
    return DATA_DIR
