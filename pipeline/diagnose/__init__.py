"""Is it really a local minimum? Stage `diagnose` (``stage.py``) reads a capacity run of the lab's
detector, replays every seed's training (``replay.py``: the final weights, the closing epochs, a
long run), takes exact derivatives at the final weights (``derivatives.py``), decides a verdict
per seed by derivatives and by line searches (``verdicts.py``), classes every filter
(``anatomy.py``), draws the loss landscape between and around seeds (``landscape.py``) and
logs the per-seed table ``diagnosis.csv`` with its figures (``plots.py``).
"""
