"""`framecast train`: the run's configuration (``config``), its flags (``args``, no Keras, so that
``--help`` stays fast), its clips (``batches``), its files (``checkpoints``), the loop (``run``)
and the final model with its manifest (``manifest``)."""
