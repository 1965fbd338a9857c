"""Other people's checkpoints, in and out: ``importer`` (`framecast import`: a user's own Keras
checkpoint into a models folder), ``adapters`` (serving such a model over its own layers and
weights, without retracing it) and ``export`` (`framecast export`: a model folder as a
TensorFlow SavedModel)."""
