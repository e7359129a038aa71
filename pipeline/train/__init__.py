"""Training one model. Stage `train` (``stage.py``) runs the loop (``loop.py``: fit and the
split evaluation) over minibatches that are index permutations of tensors on the device
(``batching.py``), and logs params, per-epoch ``train_loss``, ``train_accuracy``,
``val_loss`` and ``val_accuracy``, filter images per epoch, figures (``figures.py``) and
the model.
"""
