"Shared pytest fixtures: the development data in ../shared/data (tests that need it skip only when it is absent)."
import os
from pathlib import Path
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get('MULTIFIT_SHARED_DATA', REPO.parent/'shared'/'data'))
LANGS = ['de', 'en', 'es', 'fr', 'it', 'ja', 'ru', 'zh']

@pytest.fixture(scope='session')
def shared_data() -> Path:
    "Path of ../shared/data (override with MULTIFIT_SHARED_DATA); skips the test if it is absent"
    if not (SHARED/'ddtp').is_dir(): pytest.skip(f'development data not found at {SHARED}')
    return SHARED

def ddtp_path(lang: str, split: str = 'train') -> Path:
    return SHARED/'ddtp'/lang/f'{split}.csv'

def _seed_all(seed: int = 0):
    import random
    import numpy as np, torch
    random.seed(seed); np.random.seed(seed); torch.manual_seed(seed)

@pytest.fixture(autouse=True, scope='module')
def _seeded_module():
    "Module fixtures (tiny LMs trained once per file) see the same random state whatever ran before in the worker"
    _seed_all(0)

@pytest.fixture(autouse=True)
def _seeded_test():
    "Each test starts from the same random state, so results do not depend on test order or xdist distribution"
    _seed_all(0)
