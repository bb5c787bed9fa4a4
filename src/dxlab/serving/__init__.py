"""Production scoring: the scorer (model registry, anomaly detector, explanations), daily batch prediction, the
FastAPI service with Prometheus metrics, and the AWS Lambda handler. Heavy imports stay in the submodules."""
