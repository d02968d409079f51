"""Evaluation of guides: exact EditWorld metrics (:mod:`.editworld_metrics`) and the runner behind
``editkit eval`` (:mod:`.runner`). Importing this package is cheap; the submodules import numpy/PIL."""
