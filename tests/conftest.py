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
