"""`framecast evaluate`: the test protocol (``protocol``: what a model scores on the fixed test
clips), the model card (``card``: evaluate a folder, the quality bar, the published figures, the
command) and its Markdown (``markdown``)."""
