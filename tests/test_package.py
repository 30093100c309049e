"The package's top level: `from multifit_fastai import *` after fastai's star import shadows nothing of fastai's."
import multifit_fastai

def test_star_import_shadows_nothing_of_fastai():
    ns = {}
    exec('from fastai.text.all import *', ns)
    before = dict(ns)
    exec('from multifit_fastai import *', ns)
    assert [k for k in before if not k.startswith('__') and ns[k] is not before[k]] == []
    assert 'AWD_QRNN' in ns and 'MultiFiT' in ns and 'set_precision' in ns and 'convert_multifit_v1' in ns

def test_all_names_exist_and_are_unique():
    names = multifit_fastai.__all__
    assert len(names) == len(set(names))
    assert all(hasattr(multifit_fastai, n) for n in names)
    assert 'one_hot' not in names and 'META' not in names
    from multifit_fastai.bootstrap import one_hot
    assert one_hot(['a', 'b'], ['a', 'b']).shape == (2, 2)
