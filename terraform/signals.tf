# Signal wiring, each piece optional: the topic, a Monitoring pubsub channel, a log-based alert
# and a log sink on failed Cloud Tasks attempts, and a deploy-notification subscription.

locals {
  monitoring_agent = "serviceAccount:service-${data.google_project.main.number}@gcp-sa-monitoring-notification.iam.gserviceaccount.com"

  # Failed attempts of the target queues in this project. `attemptResponseLog:*` keeps the
  # comparison to entries that have a response log at all.
  attempt_failure_filter = join(" AND ", [
    "logName=\"projects/${var.project_id}/logs/cloudtasks.googleapis.com%2Ftask_operations_log\"",
    "jsonPayload.attemptResponseLog:*",
    "jsonPayload.attemptResponseLog.status!=\"OK\"",
    "(${join(" OR ", [
      for q in local.local_target_queues :
      "(resource.labels.location=\"${q.location}\" AND resource.labels.queue_id=\"${q.queue}\")"
    ])})",
  ])
  has_local_target_queues = length(local.local_target_queues) > 0

  deploy_topic_id = startswith(var.deploy_subscription.topic, "projects/") ? var.deploy_subscription.topic : "projects/${var.project_id}/topics/${var.deploy_subscription.topic}"
}

resource "google_pubsub_topic" "signals" {
  count                      = var.signals_topic.create ? 1 : 0
  project                    = var.project_id
  name                       = local.topic_name
  labels                     = var.labels
  message_retention_duration = "${var.signals_topic.message_retention_s}s"
  kms_key_name               = var.kms_key_name
}

resource "google_monitoring_notification_channel" "signals" {
  count        = var.notification_channel.enabled ? 1 : 0
  project      = var.project_id
  display_name = coalesce(var.notification_channel.display_name, "${var.name_prefix} signals")
  description  = "Publishes alert incidents to redrive's signals topic; attach it to alert policies on the target queues."
  type         = "pubsub"
  labels = {
    topic = local.topic_id
  }
}

# The Monitoring notification service agent comes into being with the first pubsub channel, hence
# the explicit dependency.
resource "google_pubsub_topic_iam_member" "monitoring_publisher" {
  count   = var.notification_channel.enabled ? 1 : 0
  project = var.project_id
  topic   = local.topic_id
  role    = "roles/pubsub.publisher"
  member  = local.monitoring_agent

  depends_on = [google_monitoring_notification_channel.signals]
}

# A log-match condition needs a notification rate limit. redrive reads the task name from the
# documentation template (key=value lines), the one place extracted labels reliably appear.
resource "google_monitoring_alert_policy" "attempt_failures" {
  count        = var.attempt_failure_alert.enabled && local.has_local_target_queues ? 1 : 0
  project      = var.project_id
  display_name = "${var.name_prefix}: Cloud Tasks attempt failed"
  combiner     = "OR"
  severity     = "WARNING"
  user_labels  = { redrive = "attempt-failures" }

  conditions {
    display_name = "failed attempt in a target queue"
    condition_matched_log {
      filter = local.attempt_failure_filter
      label_extractors = {
        task   = "EXTRACT(jsonPayload.task)"
        status = "EXTRACT(jsonPayload.attemptResponseLog.status)"
      }
    }
  }

  alert_strategy {
    notification_rate_limit {
      period = "${var.attempt_failure_alert.notification_rate_limit_s}s"
    }
    auto_close = "${var.attempt_failure_alert.auto_close_s}s"
  }

  documentation {
    mime_type = "text/markdown"
    subject   = "redrive: task attempt failed"
    content   = "task=$${log.extracted_label.task}\nstatus=$${log.extracted_label.status}"
  }

  notification_channels = [google_monitoring_notification_channel.signals[0].id]

  lifecycle {
    precondition {
      condition     = var.notification_channel.enabled
      error_message = "The attempt_failure_alert needs notification_channel.enabled = true: the alert reaches redrive through that channel."
    }
  }
}

resource "google_logging_project_sink" "attempt_failures" {
  count                  = var.attempt_failure_sink.enabled && local.has_local_target_queues ? 1 : 0
  project                = var.project_id
  name                   = "${var.name_prefix}-attempt-failures"
  description            = "Failed Cloud Tasks attempts of redrive's target queues, one Pub/Sub message per attempt."
  destination            = "pubsub.googleapis.com/${local.topic_id}"
  filter                 = local.attempt_failure_filter
  unique_writer_identity = true
}

# The writer identity is already in member form ("serviceAccount:...").
resource "google_pubsub_topic_iam_member" "sink_publisher" {
  count   = var.attempt_failure_sink.enabled && local.has_local_target_queues ? 1 : 0
  project = var.project_id
  topic   = local.topic_id
  role    = "roles/pubsub.publisher"
  member  = google_logging_project_sink.attempt_failures[0].writer_identity
}

# A push subscription of our own (one function has one event trigger): deploy notifications reach
# handle_signal as raw push bodies, which functions-framework turns into CloudEvents; the topic in
# the URL path becomes the CloudEvent source. An empty expiration ttl keeps it however quiet
# deploys are.
resource "google_pubsub_subscription" "deploys" {
  count                      = var.deploy_subscription.enabled ? 1 : 0
  project                    = var.project_id
  name                       = "${var.name_prefix}-deploys"
  topic                      = local.deploy_topic_id
  labels                     = var.labels
  filter                     = var.deploy_subscription.filter
  ack_deadline_seconds       = coalesce(var.deploy_subscription.ack_deadline_s, min(600, var.signal_function.timeout_s))
  message_retention_duration = "86400s"

  retry_policy {
    minimum_backoff = "10s"
    maximum_backoff = "600s"
  }

  expiration_policy {
    ttl = ""
  }

  push_config {
    push_endpoint = "${google_cloudfunctions2_function.main.service_config[0].uri}/${local.deploy_topic_id}"
    oidc_token {
      service_account_email = google_service_account.main.email
      audience              = google_cloudfunctions2_function.main.service_config[0].uri
    }
  }
}
