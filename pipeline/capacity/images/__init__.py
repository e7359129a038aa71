"""The capacity study on images: S seeds of one 2D ConvNet trained as one computation
(``stacked.py``: parameters stacked on a seed axis, grouped convolutions; ``trainer.py``: the
batches and optimizer steps of `pipeline train --seed s` for every s), the grid over filter
counts x kernel sizes (``grid.py``), accuracy statistics over seeds (``stats.py``), figures
(``plots.py``) and stage `capacity --dataset ...` (``stage.py``), which logs a parent run with
the per-seed table, curves and figures, and a child run per (F, k).
"""
