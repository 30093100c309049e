"MultiFiT (QRNN + SentencePiece + the ULMFiT recipe) as a fastai v2 extension."
# Not exported from a notebook: the package entry point only re-exports the modules.
from importlib.metadata import version as _version, PackageNotFoundError as _PNF
try: __version__ = _version('multifit_fastai')
except _PNF: __version__ = '0.0.0'  # running from a source tree that was never installed

from .core import *
from .data import *
from .textrules import *
from .tokenizer import *
from .losses import *
from .callbacks import *
from .precision import *
from .qrnn import *
from .models import *
from .v1text import *
from .presets import *
from .package import *
from .convert import *
from .learner import *
from .pipeline import *
from .teachers import *
from .bootstrap import *
from .corpus import *
from .checkpoint import *
from .distributed import *
import sys as _sys
_MODULES = ('core', 'data', 'textrules', 'tokenizer', 'losses', 'callbacks', 'precision', 'qrnn', 'models', 'v1text', 'presets',
            'package', 'convert', 'learner', 'pipeline', 'teachers', 'bootstrap', 'corpus', 'checkpoint', 'distributed')

# `from fastai.text.all import *; from multifit_fastai import *` must not shadow fastai: names that clash with fastai's
# (`one_hot`) or mean nothing at the top level (file-name and format constants) stay in their modules.
_MODULE_ONLY = {'one_hot', 'META', 'IDS', 'OFFSETS', 'FORMAT', 'TOK_CONFIG', 'TOK_MODEL', 'TOK_FORMAT', 'CKPT_FORMAT',
                'CKPT_VERSION', 'PKG_FORMAT', 'PKG_VERSION', 'PROB_PREFIX', 'TEACHER_EXTRA', 'TOKENIZER_LINES'}
__all__ = [n for m in _MODULES for n in _sys.modules[f'{__name__}.{m}'].__all__ if n not in _MODULE_ONLY]
