"""The capacity study: how often does training succeed (loss < τ at 100% training accuracy),
against filter count and kernel size? Stage `capacity` (``stage.py``) trains every (F, k) from many seeds at once
(``multiseed.py`` with the hand-written forward and backward of ``kernel.py``), turns them
into per-seed outcomes (``outcomes.py``) and statistics (``stats.py``: Wilson intervals,
the lottery fit), and logs a parent run with figures (``plots.py``) and tables and one
child run per configuration. On image data the same stage trains a 2D net's seeds at once
and reports test accuracy over seeds (``images/``).
"""
