# Outcomes as numbers: one log-based counter of redrive's decisions labelled by outcome, an
# optional alert when an outcome that needs a human (FAILED, PERMISSION_DENIED) appears, alerts on
# the pipeline itself (pipeline_alerts, features), and parking's metrics and alerts (parking).

locals {
  outcome_metric_name = coalesce(var.outcome_metric.name, "${var.name_prefix}/outcomes")
  outcome_metric_type = "logging.googleapis.com/user/${local.outcome_metric_name}"

  # Gen2 function logs are Cloud Run revision logs whose service has the function's name.
  function_logs = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(\"${local.signal_function_name}\" OR \"${local.job_function_name}\")",
  ])
  # Decisions only: every decision line carries event "redrive.outcome"; the per-signal summary
  # (redrive.signal), the sweep summary (redrive.sweep) and start-up lines (redrive.startup) carry
  # other events, so nothing is counted twice (tests/terraform/test_outcome_metric.py feeds the
  # filter real lines of the code).
  outcome_filter = "${local.function_logs} AND jsonPayload.event=\"redrive.outcome\""

  # The patrol's summary (parking): one redrive.sweep line per patrol, whose `parking` holds the
  # census of the parking queue: its state, the parked copies and how many of them are within
  # REDRIVE_PARKED_WARN_S of the retention limit. `expiring` is written last, once the census
  # has counted every page: a census cut short (budget, a failed listing) is not a count.
  patrol_filter = "${local.function_logs} AND jsonPayload.event=\"redrive.sweep\" AND jsonPayload.purpose=\"patrol\""
  census_filter = "${local.patrol_filter} AND jsonPayload.parking.expiring:*"
  # `state:*` first: a patrol that could not read the parking queue has no state to compare.
  parking_not_paused_filter = "${local.patrol_filter} AND jsonPayload.parking.state:* AND jsonPayload.parking.state!=\"PAUSED\""
  parking_metrics = var.parking.enabled ? {
    parked = {
      field       = "parked"
      description = "Parked copies in the parking queue, as each patrol counts them (jsonPayload.parking.parked of its redrive.sweep line)."
    }
    parked_expiring = {
      field       = "expiring"
      description = "Parked copies within REDRIVE_PARKED_WARN_S of Cloud Tasks' retention limit, as each patrol counts them (jsonPayload.parking.expiring of its redrive.sweep line)."
    }
  } : {}
  parking_metric_types = { for key, _ in local.parking_metrics : key => "logging.googleapis.com/user/${var.name_prefix}/${key}" }

  # The Eventarc subscription of handle_signal's trigger: eventarc-REGION-TRIGGER-sub-NNN, where
  # the trigger id starts with the function's name.
  trigger_subscription_filter = "resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=starts_with(\"eventarc-${var.region}-${local.signal_function_name}\")"

  alert_channels = var.pipeline_alerts.notification_channels
  pipeline_alert = {
    signal_errors   = var.pipeline_alerts.enabled && var.pipeline_alerts.signal_errors.enabled
    signal_backlog  = var.pipeline_alerts.enabled && var.pipeline_alerts.signal_backlog.enabled
    job_failures    = var.pipeline_alerts.enabled && var.pipeline_alerts.job_failures.enabled
    invalid_signals = var.pipeline_alerts.enabled && var.pipeline_alerts.invalid_signals.enabled && var.outcome_metric.enabled
    dead_letters    = var.pipeline_alerts.enabled && var.pipeline_alerts.dead_letters.enabled && var.dead_letter.enabled
    halted_redrives = var.pipeline_alerts.enabled && var.features.halted_redrives.enabled && var.outcome_metric.enabled
    parked          = var.pipeline_alerts.enabled && var.parking.enabled && var.parking.alerts.parked.enabled && var.outcome_metric.enabled
    parked_expiring = var.pipeline_alerts.enabled && var.parking.enabled && var.parking.alerts.expiring.enabled
    parking_paused  = var.pipeline_alerts.enabled && var.parking.enabled && var.parking.alerts.not_paused.enabled
  }
}

# Never a per-task label: task names would explode the number of time series.
resource "google_logging_metric" "outcomes" {
  count       = var.outcome_metric.enabled ? 1 : 0
  project     = var.project_id
  name        = local.outcome_metric_name
  description = "redrive decisions (one per decision: jsonPayload.event=\"redrive.outcome\") by outcome and function."
  filter      = local.outcome_filter

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "INT64"
    unit         = "1"
    display_name = "redrive outcomes"
    labels {
      key         = "outcome"
      value_type  = "STRING"
      description = "The redrive outcome, such as DISPATCHED or SKIPPED_FIX_NOT_DEPLOYED."
    }
    labels {
      key         = "function"
      value_type  = "STRING"
      description = "The function that logged the outcome."
    }
  }

  label_extractors = {
    outcome  = "EXTRACT(jsonPayload.outcome)"
    function = "EXTRACT(resource.labels.service_name)"
  }
}

# Monitoring knows a new log-based metric only a while after it is created ("Cannot find
# metric(s) that match type"): the alerts and the dashboard on it wait.
resource "time_sleep" "outcome_metric" {
  count           = var.outcome_metric.enabled ? 1 : 0
  create_duration = "${var.outcome_metric.wait_s}s"

  triggers = {
    metric = google_logging_metric.outcomes[0].id
  }
}

resource "google_monitoring_alert_policy" "outcomes" {
  count        = var.outcome_alert.enabled ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: ${join(" or ", var.outcome_alert.outcomes)}"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = merge(var.labels, { redrive = "outcomes" })

  conditions {
    display_name = "redrive reported ${join(" or ", var.outcome_alert.outcomes)}"
    condition_threshold {
      filter = join(" AND ", [
        "metric.type=\"${local.outcome_metric_type}\"",
        "resource.type=\"cloud_run_revision\"",
        "metric.labels.outcome=one_of(${join(",", [for o in var.outcome_alert.outcomes : "\"${o}\""])})",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "${var.outcome_alert.alignment_period_s}s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
        group_by_fields      = ["metric.label.outcome"]
      }
      trigger {
        count = 1
      }
    }
  }

  alert_strategy {
    auto_close = "${var.outcome_alert.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive needs attention"
    content   = "redrive logged an outcome that needs a person: FAILED (a transient fault outlasted its retries) or PERMISSION_DENIED (a missing grant). Search the function logs for jsonPayload.event=\"redrive.outcome\" and jsonPayload.outcome to see the tasks."
  }

  notification_channels = var.outcome_alert.notification_channels

  lifecycle {
    precondition {
      condition     = var.outcome_metric.enabled
      error_message = "The outcome_alert needs outcome_metric.enabled = true: it alerts on that metric."
    }
  }

  depends_on = [time_sleep.outcome_metric]
}

# ---------------------------------------------------------------------------------------------
# The pipeline itself

resource "google_monitoring_alert_policy" "signal_errors" {
  count        = local.pipeline_alert.signal_errors ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: handle_signal errors"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = merge(var.labels, { redrive = "signal-errors" })

  conditions {
    display_name = "handle_signal answered 5xx"
    condition_threshold {
      filter = join(" AND ", [
        "metric.type=\"run.googleapis.com/request_count\"",
        "resource.type=\"cloud_run_revision\"",
        "resource.labels.service_name=\"${local.signal_function_name}\"",
        "metric.labels.response_code_class=\"5xx\"",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = var.pipeline_alerts.signal_errors.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "${var.pipeline_alerts.signal_errors.window_s}s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: handle_signal is failing"
    content   = "handle_signal raised (transient faults are redelivered by Eventarc; a signal that keeps failing ends in the dead-letter subscription). Look at the function's error logs and at the FAILED decisions."
  }

  notification_channels = local.alert_channels
}

resource "google_monitoring_alert_policy" "signal_backlog" {
  count        = local.pipeline_alert.signal_backlog ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: signals waiting"
  combiner     = "OR"
  severity     = "WARNING"
  user_labels  = merge(var.labels, { redrive = "signal-backlog" })

  conditions {
    display_name = "oldest unacknowledged signal older than ${var.pipeline_alerts.signal_backlog.max_age_s}s"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.trigger_subscription_filter}"
      comparison      = "COMPARISON_GT"
      threshold_value = var.pipeline_alerts.signal_backlog.max_age_s
      duration        = "${var.pipeline_alerts.signal_backlog.duration_s}s"
      aggregations {
        alignment_period   = "60s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  alert_strategy {
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: signals are not being processed"
    content   = "The oldest signal on handle_signal's trigger subscription is waiting too long: the function fails, is throttled (max_instance_count) or cannot be invoked (run.invoker, ingress)."
  }

  notification_channels = local.alert_channels
}

resource "google_monitoring_alert_policy" "job_failures" {
  count        = local.pipeline_alert.job_failures ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: redrive jobs failing"
  combiner     = "OR"
  severity     = "WARNING"
  user_labels  = merge(var.labels, { redrive = "job-failures" })

  conditions {
    display_name = "failed attempts of the redrive queue"
    condition_threshold {
      filter = join(" AND ", [
        "metric.type=\"cloudtasks.googleapis.com/queue/task_attempt_count\"",
        "resource.type=\"cloud_tasks_queue\"",
        "resource.labels.queue_id=\"${local.queue_id}\"",
        "metric.labels.response_code!=\"OK\"",
      ])
      comparison      = "COMPARISON_GT"
      threshold_value = var.pipeline_alerts.job_failures.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "${var.pipeline_alerts.job_failures.window_s}s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: run_job attempts are failing"
    content   = "Attempts of the redrive queue (${local.queue_id}) answer errors: run_job raises (transient Cloud Tasks or Cloud Run faults, quota) or cannot be invoked. The queue retries them; pause it to stop every re-drive."
  }

  notification_channels = local.alert_channels
}

resource "google_monitoring_alert_policy" "invalid_signals" {
  count        = local.pipeline_alert.invalid_signals ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: invalid signals"
  combiner     = "OR"
  severity     = "WARNING"
  user_labels  = merge(var.labels, { redrive = "invalid-signals" })

  conditions {
    display_name = "INVALID_SIGNAL decisions above ${var.pipeline_alerts.invalid_signals.threshold}"
    condition_threshold {
      filter          = "metric.type=\"${local.outcome_metric_type}\" AND resource.type=\"cloud_run_revision\" AND metric.labels.outcome=\"INVALID_SIGNAL\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.pipeline_alerts.invalid_signals.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "${var.pipeline_alerts.invalid_signals.window_s}s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: many invalid signals"
    content   = "handle_signal receives messages it cannot read (INVALID_SIGNAL, acknowledged and dropped): a publisher sends the wrong shape, or someone publishes to the signals topic who should not."
  }

  notification_channels = local.alert_channels

  depends_on = [time_sleep.outcome_metric]
}

resource "google_monitoring_alert_policy" "dead_letters" {
  count        = local.pipeline_alert.dead_letters ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: dead-lettered signals"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = merge(var.labels, { redrive = "dead-letters" })

  conditions {
    display_name = "signals in the dead-letter subscription"
    condition_threshold {
      filter          = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${local.topic_name}-dead-letter-hold\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period   = "300s"
        per_series_aligner = "ALIGN_MAX"
      }
    }
  }

  alert_strategy {
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: signals were dead-lettered"
    content   = "Signals failed ${var.dead_letter.max_delivery_attempts} deliveries and were moved to ${local.topic_name}-dead-letter-hold. Read them there, fix the cause, and publish them back to the signals topic."
  }

  notification_channels = local.alert_channels
}

# Halted re-drives (features.halted_redrives): decisions with outcome HALTED, written when a bulk
# re-drive's canaries fail again (var.canaries).
resource "google_monitoring_alert_policy" "halted_redrives" {
  count        = local.pipeline_alert.halted_redrives ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: re-drive halted"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = merge(var.labels, { redrive = "halted" })

  conditions {
    display_name = "HALTED decisions"
    condition_threshold {
      filter          = "metric.type=\"${local.outcome_metric_type}\" AND resource.type=\"cloud_run_revision\" AND metric.labels.outcome=\"HALTED\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "300s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: a re-drive was halted"
    content   = "A re-drive stopped because its canaries failed again (outcome HALTED): the fix did not fix these tasks. Search jsonPayload.event=\"redrive.outcome\" AND jsonPayload.outcome=\"HALTED\"."
  }

  notification_channels = local.alert_channels

  depends_on = [time_sleep.outcome_metric]
}

# ---------------------------------------------------------------------------------------------
# Parking (var.parking)

# The patrol's census as numbers: each patrol line gives one value (a distribution metric with a
# value extractor: Logging's way to a number read from a line). Charts and alerts read them
# with ALIGN_DELTA and REDUCE_MEAN, which the distribution's exact mean answers: the count of the
# patrol in the period (of the patrols, when several fall in one).
resource "google_logging_metric" "parking" {
  for_each        = local.parking_metrics
  project         = var.project_id
  name            = "${var.name_prefix}/${each.key}"
  description     = each.value.description
  filter          = local.census_filter
  value_extractor = "EXTRACT(jsonPayload.parking.${each.value.field})"

  metric_descriptor {
    metric_kind  = "DELTA"
    value_type   = "DISTRIBUTION"
    unit         = "1"
    display_name = "redrive ${replace(each.key, "_", " ")} tasks"
  }

  # Only the mean is read; buckets up to 2^24 keep the distribution's shape for anyone who looks.
  bucket_options {
    exponential_buckets {
      num_finite_buckets = 24
      growth_factor      = 2
      scale              = 1
    }
  }
}

resource "time_sleep" "parking_metrics" {
  count           = var.parking.enabled ? 1 : 0
  create_duration = "${var.outcome_metric.wait_s}s"

  triggers = {
    metrics = join(",", [for key in sort(keys(local.parking_metrics)) : google_logging_metric.parking[key].id])
  }
}

resource "google_monitoring_alert_policy" "parked" {
  count        = local.pipeline_alert.parked ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: tasks parked"
  combiner     = "OR"
  severity     = "WARNING"
  user_labels  = merge(var.labels, { redrive = "parked" })

  conditions {
    display_name = "PARKED decisions above ${var.parking.alerts.parked.threshold}"
    condition_threshold {
      filter          = "metric.type=\"${local.outcome_metric_type}\" AND resource.type=\"cloud_run_revision\" AND metric.labels.outcome=\"PARKED\""
      comparison      = "COMPARISON_GT"
      threshold_value = var.parking.alerts.parked.threshold
      duration        = "0s"
      aggregations {
        alignment_period     = "${var.parking.alerts.parked.window_s}s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_SUM"
      }
    }
  }

  alert_strategy {
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: tasks were parked"
    content   = "Tasks whose next attempt would have been their last (or that neared Cloud Tasks' 31-day retention limit) were moved to ${var.name_prefix}-parking while no fix was live: their work waits there, and runs again once a deploy that fixes it restores them (or redrive parked restore). redrive parked list shows them; jsonPayload.outcome=\"PARKED\" lines say which and why (jsonPayload.parked)."
  }

  notification_channels = local.alert_channels

  depends_on = [time_sleep.outcome_metric]
}

resource "google_monitoring_alert_policy" "parked_expiring" {
  count        = local.pipeline_alert.parked_expiring ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: parked tasks near the retention limit"
  combiner     = "OR"
  severity     = "WARNING"
  user_labels  = merge(var.labels, { redrive = "parked-expiring" })

  conditions {
    display_name = "parked copies within ${var.parking.warn_s}s of the retention limit"
    condition_threshold {
      filter          = "metric.type=\"${local.parking_metric_types["parked_expiring"]}\" AND resource.type=\"cloud_run_revision\""
      comparison      = "COMPARISON_GT"
      threshold_value = 0
      duration        = "0s"
      aggregations {
        alignment_period     = "${var.parking.alerts.expiring.window_s}s"
        per_series_aligner   = "ALIGN_DELTA"
        cross_series_reducer = "REDUCE_MEAN"
      }
    }
  }

  alert_strategy {
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: parked tasks will soon be deleted by Cloud Tasks"
    content   = "Cloud Tasks deletes every task 31 days after its creation, parked copies included: the patrol counts parked copies with less than ${var.parking.warn_s}s left (jsonPayload.parking.soonest_expiry of its redrive.sweep line says when the first goes). Deploy the fix and let it restore them, or redrive parked restore; redrive parked list shows the days left. Unless restored, their work is lost."
  }

  notification_channels = local.alert_channels

  depends_on = [time_sleep.parking_metrics]
}

# A log-match condition: the patrol line itself, with the state it found.
resource "google_monitoring_alert_policy" "parking_not_paused" {
  count        = local.pipeline_alert.parking_paused ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: parking queue not paused"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = merge(var.labels, { redrive = "parking-not-paused" })

  conditions {
    display_name = "a patrol found the parking queue not PAUSED"
    condition_matched_log {
      filter = local.parking_not_paused_filter
      label_extractors = {
        state = "EXTRACT(jsonPayload.parking.state)"
        queue = "EXTRACT(jsonPayload.parking.queue)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "${var.parking.alerts.not_paused.notification_rate_limit_s}s"
    }
    auto_close = "${var.pipeline_alerts.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: the parking queue is not paused"
    content   = "The patrol found $${log.extracted_label.queue} $${log.extracted_label.state}. Its parked copies cannot reach a target (their URL is an .invalid host), but a running queue dispatches them once due and a disabled one cannot be resumed by redrive. Pause it: gcloud tasks queues pause ${var.name_prefix}-parking --location=${var.region} --project=${var.project_id} (the parking_queue_pause_command output)."
  }

  notification_channels = local.alert_channels
}
