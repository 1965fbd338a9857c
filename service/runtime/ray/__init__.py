"""The same models on Ray Serve: the deployments and how model files reach every node."""
