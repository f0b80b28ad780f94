"""Ray Serve serving the SavedModel (the ``ray-serve`` kind): a deployment class, @serve.batch,
replicas, on a local Ray cluster servecap starts and stops or on an existing one."""
