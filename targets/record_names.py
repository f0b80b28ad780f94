"""The names request records carry (``name``) that a target's protocol decides: the job queue's
(no import of servecap: the images carry targets/ alone; analysis.contract re-exports them)."""

JOB_REQUEST = "job"
"""The job queue's request names (``name``): a whole job (submit to result, the headline),"""
JOB_SUBMIT_REQUEST = "submit"
"""its submission (``POST /v1/jobs``),"""
JOB_POLL_REQUEST = "poll"
"""and each long poll for its result."""
