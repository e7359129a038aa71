"""Data sets as tensors: the lab's synthetic 1D task bit for bit (``synthetic.py``), image data
sets from torchvision folders, IDX files, the labs' .npz files and scikit-learn's digits
(``images.py``, ``formats.py``), and the prepared bundle that stages pass by URI
(``bundle.py``, ``io.py``). Stage `prepare-data` (``prepare.py``) logs the tensors as
``data/data.pt``, a dataset input, class counts and a picture of the data.
"""
