"""The asynchronous job-queue target (kind ``jobqueue``): method 2 of the seed notes.

The web process only validates and enqueues; separate worker processes hold the model and
work through the queue; results wait in Redis until the client fetches them. Engine: RQ on a
real Redis server (``redis-server`` on ``127.0.0.1:<model_port>``).

Processes (:mod:`targets.jobqueue.launch`)::

    redis-server  <-  worker x queue_workers  (python -m targets.jobqueue.worker)
                  <-  web (uvicorn targets.jobqueue.web:create_app, config.workers)

HTTP API (:mod:`targets.jobqueue.web`):

* ``POST /v1/jobs``, same body as ``POST /v1/predict``: validated and decoded at once (the same
  4xx errors and body limit as the predict API; nothing is enqueued on error), then enqueued:
  ``202 {"job_id", "status": "queued"}`` with ``Location: /v1/jobs/<id>``.
* ``GET /v1/jobs/<id>?wait_s=N``: long poll, ``N`` clamped to ``[0, long_poll_max_s]`` (30 s).
  ``200 {"status": "finished", "classes", "probabilities"}`` | ``200 {"status": "failed",
  "error"}`` | ``202 {"status": "queued" | "started"}`` once ``N`` s have passed | ``404``.
* ``GET /healthz[?min_workers=K]``: 200 when Redis answers and at least K (default 1) **live**
  workers are registered; 503 otherwise. ``GET /v1/info``: queue length, workers, settings.

Semantics:

* **max_works** = the most jobs waiting in the queue (not yet taken by a worker), for the whole
  target. A POST that finds the queue full is answered ``503`` + ``Retry-After`` at once. The
  check and the enqueue are one atomic step (:mod:`targets.jobqueue.admission`): concurrent POSTs
  never overshoot. 0 = no limit. A Redis out of memory (``redis_maxmemory_mb``, no eviction) is
  answered 503 the same way, from 90% of it (the rest is the workers', which ride out a full
  Redis: :mod:`targets.jobqueue.worker`).
* **Persistence**: Redis keeps an append-only file (``redis_persistence``: ``everysec`` by
  default, ``always``, ``off``; :mod:`targets.jobqueue.redis_server`): a restarted Redis comes
  back with every accepted job, and a poll answered 502/503 meanwhile is retried by the load
  generator's client, as a job queue's clients do.
* **Trust**: Redis asks for a password made for each launch; jobs are stored as JSON, never
  pickle (:mod:`targets.jobqueue.common`).
* **Images in a job** are compact raw bytes (``uint8`` when every value is integral, as it is for
  the base64 and JPEG encodings, else ``float32``) plus a count, in a key of their own written
  with the job and deleted when it finishes; never JSON lists.
* **Times** (:class:`~targets.jobqueue.common.JobQueueSettings`, ``SERVECAP_*`` variables):
  job timeout 30 s (the model call for a job or batch); a waiting job is dropped after 600 s
  (RQ ``ttl``); results and failures are kept 600 s after the job ends (``result_ttl``,
  ``failure_ttl``), after which ``GET`` answers 404.
* **Batching**: a worker that dequeues a job also takes, without waiting, up to
  ``job_batch_max - 1`` more already-queued jobs, runs one model call on all their images, and
  then completes each job through RQ's normal per-job path (status, result, registries) with its
  own slice of the output. See :mod:`targets.jobqueue.worker`.
* **Workers never fork**: each loads the Predictor once and runs jobs in its own process
  (a :class:`rq.SimpleWorker` subclass); TensorFlow is not fork-safe.
* **Killed workers**: jobs a dead worker had claimed are put back at the front of the queue by
  any live worker within about 10 s (liveness = the worker's named Redis connections, which the
  kernel closes when the process dies), using RQ's own abandoned-job path and the job's
  ``Retry(max=2)``; a job is lost (status failed, ``AbandonedJobError``) only if it outlives three
  workers. Details in :mod:`targets.jobqueue.worker`.
"""
