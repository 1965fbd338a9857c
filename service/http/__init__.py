"""The HTTP layer under the routes: reading uploads, body limits, auth, request logs, the hot
path."""
