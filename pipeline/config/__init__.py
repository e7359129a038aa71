"""Configuration: one typed, frozen dataclass per stage (``stages.py``, ``studies.py``), the
field groups they share (``fields.py``), the course labs' recipes and ``resolve``
(``recipes.py``), and the parsing of CLI, MLproject and MLflow strings (``parsing.py``).
These dataclasses are the one source of defaults for the Click options and the MLproject
parameters. Nothing here talks to MLflow, loads data or imports torch.
"""
