"""Frames in and out: decoding uploads (images, video, .npy), fitting them to a model, encoding
answers."""
