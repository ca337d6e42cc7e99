"""gda: few-shot generative domain adaptation on our own StyleGAN2-ADA core."""

from setuptools import setup

PLUGINS = ['diffaugment', 'freezed', 'adafm', 'disp', 'ewc', 'idc', 'patchd', 'genda', 'rssa', 'adam', 'rick']  # built-in method plugins, registered like third-party ones

setup(
    name='gda',
    version='0.1.0',
    description='Few-shot generative domain adaptation for StyleGAN2-ADA, every method as a composable plugin',
    long_description=open('README.md', encoding='utf-8').read(),
    long_description_content_type='text/markdown',
    python_requires='>=3.9',
    packages=['stylegan2_ada', 'stylegan2_ada.ops', 'stylegan2_ada.checkpoint', 'gda_core', 'gda_core.metrics', 'gda_core.demo_data', 'gda_hooks', 'gda_plugins']
        + [f'gda_plugins.{name}' for name in PLUGINS],
    package_dir={'gda_hooks': 'hooks', 'gda_plugins': 'plugins'},
    package_data={'stylegan2_ada.ops': ['cuda/*.cu', 'cuda/*.cpp', 'cuda/*.h'],
                  'gda_core.demo_data': ['*.md', '*.txt', '*.json', '*.zip', '*.pkl', 'target/*.png']},
    install_requires=[
        'torch>=2.1', 'numpy', 'click>=8', 'pluggy>=1.0', 'ninja', 'requests',
        'pyspng', 'imageio', 'psutil', 'pillow', 'scipy', 'filelock',
    ],
    extras_require={'test': ['pytest']},
    entry_points={
        'console_scripts': ['gda = gda_core.cli:main'],
        'gda.plugins': [f'{name} = gda_plugins.{name}' for name in PLUGINS],
    },
)
