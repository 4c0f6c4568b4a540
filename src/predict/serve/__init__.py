"""`predict serve`: a task online, the batch job's plan behind the Open Inference Protocol (KServe v2), as Triton.

- predict.serve.server: loads the plan once, warms it up, runs the HTTP server until SIGTERM/SIGINT.
- predict.serve.app: the routes (health, metadata, infer, `POST /predict`, `/metrics`) and the request log.
- predict.serve.models: `{name}` (the whole task: rows in, the head's per-row pkl values out) and
  `{name}_raw` (the model alone).
- predict.serve.batcher: dynamic batching with Triton's names (`serve:` in the task YAML).
- predict.serve.protocol: the wire format, JSON and binary tensors, and `RequestError`.
- predict.serve.metrics: the Prometheus metrics.
- predict.serve.ray_serve: `--engine ray`, the same server as `serve.replicas` Ray Serve replicas.

Needs the `serve` extra: `pip install 'predict[serve]'` (starlette, uvicorn, prometheus-client).
"""
