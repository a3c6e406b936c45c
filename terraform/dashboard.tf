# A Cloud Monitoring dashboard of the pipeline: what redrive decides, how fast the redrive queue
# drains, how close RunTask runs to its quota, whether signals wait or die, and how the functions
# behave. Every widget is a time series query on a metric named here; the picture in README.md is
# rendered from this JSON (tools/tfdocs/dashboard.py).

locals {
  both_functions = "resource.labels.service_name=one_of(\"${local.signal_function_name}\",\"${local.job_function_name}\")"
  outcome_series = "metric.type=\"${local.outcome_metric_type}\" AND resource.type=\"cloud_run_revision\""
  redrive_queue  = "resource.type=\"cloud_tasks_queue\" AND resource.labels.queue_id=\"${local.queue_id}\""

  # One shape for every widget: title, chart kind, filter, aligner, reducer, grouping, an
  # optional threshold line and the y-axis label.
  dashboard_widgets = concat(
    [
      {
        title  = "Decisions by outcome (per minute)", plot = "STACKED_BAR", y = "decisions"
        filter = local.outcome_series, aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM"
        group  = ["metric.label.outcome"], threshold = null
      },
      {
        title   = "Re-drives: dispatched, queued, dry runs (per minute)", plot = "LINE", y = "decisions"
        filter  = "${local.outcome_series} AND metric.labels.outcome=one_of(\"DISPATCHED\",\"QUEUED\",\"DRY_RUN\")"
        aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["metric.label.outcome"], threshold = null
      },
      {
        title   = "Redrive queue depth (jobs waiting: the re-drive's progress)", plot = "LINE", y = "jobs"
        filter  = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" AND ${local.redrive_queue}"
        aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group = [], threshold = null
      },
      {
        title   = "Redrive queue attempts by response code (per minute)", plot = "STACKED_BAR", y = "attempts"
        filter  = "metric.type=\"cloudtasks.googleapis.com/queue/task_attempt_count\" AND ${local.redrive_queue}"
        aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["metric.label.response_code"], threshold = null
      },
      {
        title   = "RunTask calls per minute (project quota 60)", plot = "LINE", y = "calls"
        filter  = "metric.type=\"cloudtasks.googleapis.com/api/request_count\" AND metric.labels.api_method=monitoring.regex.full_match(\".*RunTask\")"
        aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = [], threshold = 60
      },
      {
        title   = "Needs a person: FAILED, PERMISSION_DENIED, INVALID_SIGNAL", plot = "STACKED_BAR", y = "decisions"
        filter  = "${local.outcome_series} AND metric.labels.outcome=one_of(\"FAILED\",\"PERMISSION_DENIED\",\"INVALID_SIGNAL\")"
        aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["metric.label.outcome"], threshold = null
      },
      {
        title   = "Oldest unacknowledged signal (seconds)", plot = "LINE", y = "seconds"
        filter  = "metric.type=\"pubsub.googleapis.com/subscription/oldest_unacked_message_age\" AND ${local.trigger_subscription_filter}"
        aligner = "ALIGN_MAX", reducer = "REDUCE_MAX", group = [], threshold = var.pipeline_alerts.signal_backlog.max_age_s
      },
      {
        title   = "Dead-lettered signals kept", plot = "LINE", y = "messages"
        filter  = "metric.type=\"pubsub.googleapis.com/subscription/num_undelivered_messages\" AND resource.type=\"pubsub_subscription\" AND resource.labels.subscription_id=\"${local.topic_name}-dead-letter-hold\""
        aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group = [], threshold = null
      },
      {
        title   = "Function requests by response class (per minute)", plot = "STACKED_BAR", y = "requests"
        filter  = "metric.type=\"run.googleapis.com/request_count\" AND resource.type=\"cloud_run_revision\" AND ${local.both_functions}"
        aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["resource.label.service_name", "metric.label.response_code_class"], threshold = null
      },
      {
        title   = "Function latency, 99th percentile (ms)", plot = "LINE", y = "ms"
        filter  = "metric.type=\"run.googleapis.com/request_latencies\" AND resource.type=\"cloud_run_revision\" AND ${local.both_functions}"
        aligner = "ALIGN_PERCENTILE_99", reducer = "REDUCE_MAX", group = ["resource.label.service_name"], threshold = null
      },
    ],
    var.features.halted_redrives.enabled ? [
      {
        title   = "Halted re-drives", plot = "STACKED_BAR", y = "decisions"
        filter  = "${local.outcome_series} AND metric.labels.outcome=\"HALTED\""
        aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["metric.label.outcome"], threshold = null
      },
    ] : [],
    var.parking.enabled ? [
      {
        title   = "Parked and restored tasks (per minute)", plot = "STACKED_BAR", y = "decisions"
        filter  = "${local.outcome_series} AND metric.labels.outcome=one_of(\"PARKED\",\"RESTORED\")"
        aligner = "ALIGN_DELTA", reducer = "REDUCE_SUM", group = ["metric.label.outcome"], threshold = null
      },
      {
        title   = "Parked tasks (the patrol's count)", plot = "LINE", y = "tasks"
        filter  = "metric.type=\"${local.parking_metric_types["parked"]}\" AND resource.type=\"cloud_run_revision\""
        aligner = "ALIGN_DELTA", reducer = "REDUCE_MEAN", group = [], threshold = null
      },
      {
        title   = "Parked tasks near the retention limit", plot = "LINE", y = "tasks"
        filter  = "metric.type=\"${local.parking_metric_types["parked_expiring"]}\" AND resource.type=\"cloud_run_revision\""
        aligner = "ALIGN_DELTA", reducer = "REDUCE_MEAN", group = [], threshold = null
      },
      {
        title   = "Parking queue depth (parked copies)", plot = "LINE", y = "tasks"
        filter  = "metric.type=\"cloudtasks.googleapis.com/queue/depth\" AND resource.type=\"cloud_tasks_queue\" AND resource.labels.queue_id=\"${var.name_prefix}-parking\""
        aligner = "ALIGN_MAX", reducer = "REDUCE_SUM", group = [], threshold = null
      },
    ] : [],
  )

  dashboard = {
    displayName = coalesce(var.dashboard.display_name, "redrive (${var.name_prefix})")
    labels      = var.labels
    mosaicLayout = {
      columns = 48
      tiles = [
        for i, w in local.dashboard_widgets : {
          xPos   = (i % 2) * 24
          yPos   = floor(i / 2) * 16
          width  = 24
          height = 16
          widget = {
            title = w.title
            xyChart = {
              dataSets = [{
                plotType   = w.plot
                targetAxis = "Y1"
                timeSeriesQuery = {
                  timeSeriesFilter = {
                    filter = w.filter
                    aggregation = {
                      alignmentPeriod    = "60s"
                      perSeriesAligner   = w.aligner
                      crossSeriesReducer = w.reducer
                      groupByFields      = w.group
                    }
                  }
                }
              }]
              thresholds = w.threshold == null ? [] : [{ value = w.threshold, color = "RED", direction = "ABOVE", targetAxis = "Y1" }]
              yAxis      = { label = w.y, scale = "LINEAR" }
            }
          }
        }
      ]
    }
  }
}

resource "google_monitoring_dashboard" "main" {
  count          = var.dashboard.enabled ? 1 : 0
  project        = var.project_id
  dashboard_json = jsonencode(local.dashboard)

  lifecycle {
    precondition {
      condition     = var.outcome_metric.enabled
      error_message = "The dashboard charts the outcome metric: it needs outcome_metric.enabled = true."
    }
  }

  depends_on = [time_sleep.outcome_metric, time_sleep.parking_metrics]
}
