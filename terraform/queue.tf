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

# Queues of redrive features (a claims queue, a paused parking queue), keyed by a static feature
# name so that for_each keys are always known at plan time. Empty until a feature needs one; a
# feature adds an entry such as
#   parking = {
#     max_dispatches_per_s = 1, max_concurrent_dispatches = 1, max_attempts = -1,
#     permissions          = ["cloudtasks.tasks.create", "cloudtasks.tasks.delete", "cloudtasks.queues.pause"]
#   }
# and gets the queue NAME_PREFIX-KEY plus a custom role with exactly those permissions on it
# (iam.tf). The 6.x provider has no queue state argument: a queue that must stay paused is paused
# by redrive itself (cloudtasks.queues.pause) or by the operator.
locals {
  feature_queues = {}
}

resource "google_cloud_tasks_queue" "feature" {
  for_each = local.feature_queues
  project  = var.project_id
  name     = "${var.name_prefix}-${each.key}"
  location = var.region

  rate_limits {
    max_dispatches_per_second = each.value.max_dispatches_per_s
    max_concurrent_dispatches = each.value.max_concurrent_dispatches
  }

  retry_config {
    max_attempts = each.value.max_attempts
  }

  stackdriver_logging_config {
    sampling_ratio = 1
  }
}
