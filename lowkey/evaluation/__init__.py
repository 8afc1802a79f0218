"""``lowkey eval``: how well protection holds against recognition systems, as the paper measures it.

Modules:

- :mod:`~lowkey.evaluation.dataset`: scan ``root/<identity>/<photo>`` and split it (seeded).
- :mod:`~lowkey.evaluation.protection`: protect the users' gallery photos once (cached on disk).
- :mod:`~lowkey.evaluation.countermeasures`: blur, JPEG, downscaling, platform re-processing.
- :mod:`~lowkey.evaluation.judges`: registry models and dlib, each finding faces itself.
- :mod:`~lowkey.evaluation.cache` / :mod:`~lowkey.evaluation.embed`: embeddings, cached per photo.
- :mod:`~lowkey.evaluation.metrics`: kNN (exact or faiss), rank-k, TAR at a fixed FAR.
- :mod:`~lowkey.evaluation.runner`: the protocol end to end (:func:`run_evaluation`).
- :mod:`~lowkey.evaluation.report`: ``report.md``, ``results.json``/``.csv``, plots.
"""

from lowkey.evaluation.report import write_outputs
from lowkey.evaluation.runner import EvalConfig, run_evaluation

__all__ = ["EvalConfig", "run_evaluation", "write_outputs"]
