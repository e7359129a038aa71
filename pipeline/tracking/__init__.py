"""The one place that talks to MLflow: the store and the run a stage writes in, its params and
tags (``runs.py``), batched metrics (``metrics.py``), figures (the plotting helpers that several
stages share, ``figures.py``, drawn by ``drawing.py``), tables and models (``artifacts.py``). The
database helpers that MLflow's and Optuna's stores share (``stores.py``) and the redaction of
passwords in URLs (``redact.py``) live here too.
"""
