"MultiFiT (QRNN + SentencePiece + the ULMFiT recipe) as a fastai v2 extension."
# Not exported from a notebook: the package entry point only re-exports the modules.
from importlib.metadata import version as _version, PackageNotFoundError as _PNF
try: __version__ = _version('multifit_fastai')
except _PNF: __version__ = '0.0.0'  # running from a source tree that was never installed

from .core import *
from .data import *
from .tokenizer import *
from .losses import *
from .callbacks import *
from .precision import *
from .qrnn import *
from .models import *
from .convert import *
from .learner import *
from .pipeline import *
from .bootstrap import *
from .corpus import *
from .checkpoint import *
from .distributed import *
