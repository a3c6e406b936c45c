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

# Queues of redrive features, keyed by a static feature name so that for_each keys are always
# known at plan time; each gets the queue NAME_PREFIX-KEY plus a custom role with exactly its
# permissions on it (iam.tf), and sets only max_attempts of its retry policy.
#
# claims: the global claim of each forced run (REDRIVE_CLAIMS_QUEUE; docs/design.md). Its tasks
# are write-once markers, created (CreateTask) and read with their body (GetTask, FULL view) by
# the runtime account, due 29 days ahead, never dispatched on purpose. Keep the queue paused:
# the 6.x provider has no queue state argument, so pause it once after the first apply (the
# output claims_queue_pause_command). Left running it is still safe: its markers only come due
# when the failure they guard is moot, and a marker that is dispatched fails once against an
# address that resolves nowhere (max_attempts = 1) and is gone.
#
# parking (var.parking): REDRIVE_PARKING_QUEUE, the parked copies of tasks that were about to use
# their last attempt. Kept paused the same way (the output parking_queue_pause_command; the
# patrol reports its state and logs ERROR while it is not PAUSED). A parked copy is due 30 days
# ahead and targets an .invalid host, so even in a queue resumed by mistake it never reaches a
# target; unlimited attempts and no max_retry_duration (0: unlimited) keep such a dispatch from
# ever deleting it: only Cloud Tasks' retention (31 days after its creation) does, unless it is
# restored or purged first.
locals {
  feature_queues = merge(
    {
      claims = {
        max_dispatches_per_s      = 1
        max_concurrent_dispatches = 1
        max_attempts              = 1
        permissions               = ["cloudtasks.tasks.create", "cloudtasks.tasks.get", "cloudtasks.tasks.fullView"]
      }
    },
    var.parking.enabled ? {
      parking = {
        max_dispatches_per_s      = 1
        max_concurrent_dispatches = 1
        max_attempts              = -1
        permissions               = local.parking_queue_permissions
      }
    } : {},
  )
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

  lifecycle {
    # redrive refuses to start when REDRIVE_ALLOWED_QUEUES lists one of its own queues.
    precondition {
      condition     = !contains(var.target_queues, "projects/${var.project_id}/locations/${var.region}/queues/${var.name_prefix}-${each.key}")
      error_message = "The target_queues list redrive's own ${each.key} queue (${var.name_prefix}-${each.key}): redrive never re-drives its own queues; list only your application's queues."
    }
  }
}
