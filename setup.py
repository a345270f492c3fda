from setuptools import find_packages, setup

setup(
    name="fairseq_vqw2v",
    version="0.1.0",
    description="vq-wav2vec, BERT on discrete speech units and CTC acoustic models as a fairseq plugin",
    python_requires=">=3.8",
    packages=find_packages(include=["fairseq_vqw2v", "fairseq_vqw2v.*", "manifests"]),
    install_requires=[
        # official fairseq 0.12.2 does not import on Python >= 3.11 (dataclass mutable defaults)
        'fairseq-fixed==0.12.3.1; python_version >= "3.11"',
        'fairseq==0.12.2; python_version < "3.11"',
        "torch>=2.6",
        # fairseq's TokenBlockDataset (masked_lm) calls np.compat, removed in numpy 2
        "numpy<2",
        "soundfile",
        "editdistance",
        "kenlm",
        "flashlight-text",
        # fairseq's --tensorboard-logdir writes through it (and fairseq asks for it on import)
        "tensorboardX",
        "tqdm",
        "matplotlib",
    ],
    extras_require={"test": ["pytest", "pytest-xdist", "kaldi-native-fbank"]},
    entry_points={
        "console_scripts": [
            "vqw2v-convert=fairseq_vqw2v.cli.convert:main",
            "vqw2v-quantize=fairseq_vqw2v.cli.quantize:main",
            "vqw2v-featurize=fairseq_vqw2v.cli.featurize:main",
        ]
    },
)
