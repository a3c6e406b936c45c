# Outcomes as numbers: one log-based counter of redrive's outcome records labelled by outcome,
# and an optional alert when an outcome that needs a human (FAILED, PERMISSION_DENIED) appears.

locals {
  outcome_metric_name = coalesce(var.outcome_metric.name, "${var.name_prefix}/outcomes")
}

# Gen2 function logs are Cloud Run revision logs whose service has the function's name. Never a
# per-task label: task names would explode the number of time series.
resource "google_logging_metric" "outcomes" {
  count       = var.outcome_metric.enabled ? 1 : 0
  project     = var.project_id
  name        = local.outcome_metric_name
  description = "redrive outcome records (one per decision, signal or sweep) by outcome and function."
  filter = join(" AND ", [
    "resource.type=\"cloud_run_revision\"",
    "resource.labels.service_name=(\"${local.signal_function_name}\" OR \"${local.job_function_name}\")",
    "jsonPayload.outcome:*",
  ])

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

resource "google_monitoring_alert_policy" "outcomes" {
  count        = var.outcome_alert.enabled ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: ${join(" or ", var.outcome_alert.outcomes)}"
  combiner     = "OR"
  severity     = "ERROR"
  user_labels  = { redrive = "outcomes" }

  conditions {
    display_name = "redrive reported ${join(" or ", var.outcome_alert.outcomes)}"
    condition_threshold {
      filter = join(" AND ", [
        "metric.type=\"logging.googleapis.com/user/${local.outcome_metric_name}\"",
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
    content   = "redrive logged an outcome that needs a person: FAILED (a transient fault outlasted its retries) or PERMISSION_DENIED (a missing grant). Search the function logs for jsonPayload.outcome to see the tasks."
  }

  notification_channels = var.outcome_alert.notification_channels

  lifecycle {
    precondition {
      condition     = var.outcome_metric.enabled
      error_message = "The outcome_alert needs outcome_metric.enabled = true: it alerts on that metric."
    }
  }

  depends_on = [google_logging_metric.outcomes]
}
