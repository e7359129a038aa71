"""The models, built by name with their filter counts and kernel sizes (``registry.py``): the
lab's 1D detector (``detector.py``) and the labs' 2D ConvNets (``convnets.py``), whose
flatten sizes come from the conv arithmetic (``conv_arith.py``). No stage lives here;
``summary.py`` gives the layer table that `train` logs as ``model_summary.txt``.
"""
