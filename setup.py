"Package set-up: every field comes from settings.ini (the single home of metadata and requirements)."
from configparser import ConfigParser
from pathlib import Path
import setuptools

cfg = ConfigParser(delimiters=['='])
cfg.read(Path(__file__).parent/'settings.ini', encoding='utf-8')
cfg = cfg['DEFAULT']

def _reqs(key): return cfg.get(key, '').split()

licenses = {'apache2': ('Apache Software License 2.0', 'OSI Approved :: Apache Software License')}
lic = licenses[cfg['license']]

setuptools.setup(
    name=cfg['lib_name'],
    version=cfg['version'],
    description=cfg['description'],
    long_description=(Path(__file__).parent/'README.md').read_text(encoding='utf-8'),
    long_description_content_type='text/markdown',
    author=cfg['author'],
    author_email=cfg['author_email'],
    license=lic[0],
    keywords=cfg['keywords'].split(),
    classifiers=['Programming Language :: Python :: 3', 'License :: ' + lic[1], 'Natural Language :: ' + cfg['language']],
    url=cfg['git_url'],
    packages=setuptools.find_packages(include=[cfg['lib_name'], cfg['lib_name'] + '.*']),
    include_package_data=True,
    package_data={cfg['lib_name']: ['assets/*']},
    python_requires='>=' + cfg['min_python'],
    install_requires=_reqs('requirements'),
    extras_require={'dev': _reqs('dev_requirements'), 'teacher': _reqs('teacher_requirements'),
                    'distributed': _reqs('distributed_requirements'), 'bench': _reqs('bench_requirements'),
                    'v1': _reqs('v1_requirements')},
    entry_points={'console_scripts': cfg['console_scripts'].split()},
    zip_safe=False,
)
