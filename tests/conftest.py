import os

# Keras, where the tests use it as the reference, runs on its PyTorch backend (a test extra).
os.environ.setdefault("KERAS_BACKEND", "torch")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
