"""Looking at a trained model. Stage `evaluate` (``stage.py``) logs ``test_loss``,
``test_accuracy``, the confusion matrix, per-class accuracy, the easiest and hardest
examples and feature maps; stage `inspect` (``inspect.py``) logs activation maximisation,
saliency and Sobel scores, computed by the pure functions in ``probes.py``. Both open the
model and its data through ``loading.py``.
"""
