# The redrive queue: the one global throttle of RunTask (its rate stays below the project's RunTask
# quota: the queue limits when jobs start, not when run_job calls RunTask, so latency jitter and the
# queue's burst can bunch calls; 80% of the quota kept every 60 s window under it in the storm
# test), the durable backlog of redrive jobs and, through explicit job names, their de-duplication.

resource "google_cloud_tasks_queue" "main" {
  project  = var.project_id
  name     = local.queue_id
  location = var.region

  rate_limits {
    max_dispatches_per_second = var.redrive_queue.max_dispatches_per_s
    max_concurrent_dispatches = var.redrive_queue.max_concurrent_dispatches
  }

  retry_config {
    max_attempts       = var.redrive_queue.max_attempts
    max_retry_duration = "${var.redrive_queue.max_retry_duration_s}s"
    min_backoff        = "${var.redrive_queue.min_backoff_s}s"
    max_backoff        = "${var.redrive_queue.max_backoff_s}s"
    max_doublings      = var.redrive_queue.max_doublings
  }

  stackdriver_logging_config {
    sampling_ratio = var.redrive_queue.log_sampling_ratio
  }
}
