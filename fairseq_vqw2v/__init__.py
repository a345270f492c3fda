"""fairseq_vqw2v: vq-wav2vec, BERT on discrete units and CTC acoustic models as a fairseq plugin.

Importing the package (or passing its folder to ``--user-dir``) registers every model, task and
criterion it defines with fairseq's registries.
"""

__version__ = "0.1.0"

from . import criterions, models, tasks  # noqa: F401  (registration side effects)
