"""Optuna sweeps over filter counts and kernel sizes. Stage `sweep` (``stage.py``) opens the
study in its storage (``storage.py``: SQLite, PostgreSQL, a journal file), draws points of
the search space (``space.py``), scores them with an objective (``objectives.py``), logs
one MLflow child run per trial (``trials.py``), and reports the best trials, the trials
table and Optuna's plots on its parent run (``report.py``, also `study-summary`; the plots
are drawn by the drawing helper process, ``plots.py``).
"""
