# Signal wiring, each piece optional: the topic, a Monitoring pubsub channel, a log-based alert
# and a log sink on failed Cloud Tasks attempts, a deploy-notification subscription (and its
# topic), the patrol's schedule (with parking), and the dead-letter topic of redrive's own signal
# subscriptions.
#
# The signals topic is the trust boundary: whoever may publish to it can make redrive force-run
# the failing tasks of the allowed queues (every decision still goes through the guards and the
# fix check). The module grants publish only to the Monitoring notification agent and the sink's
# writer identity, and the patrol is published by the Cloud Scheduler service agent with the role
# Google gives it in the project; keep other publishers (roles/pubsub.publisher or editor on the
# project, and whoever may create Cloud Scheduler jobs there) tight.

locals {
  monitoring_agent = local.agents.monitoring

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

  deploy_topic_id         = startswith(var.deploy_subscription.topic, "projects/") ? var.deploy_subscription.topic : "projects/${var.project_id}/topics/${var.deploy_subscription.topic}"
  deploy_topic_in_project = startswith(local.deploy_topic_id, "projects/${var.project_id}/topics/")
  create_deploy_topic     = var.deploy_subscription.enabled && var.deploy_subscription.create_topic

  dead_letter_topic_id = var.dead_letter.enabled ? google_pubsub_topic.dead_letter[0].id : null
}

resource "google_pubsub_topic" "signals" {
  count                      = var.signals_topic.create ? 1 : 0
  project                    = var.project_id
  name                       = local.topic_name
  labels                     = var.labels
  message_retention_duration = "${var.signals_topic.message_retention_s}s"
  kms_key_name               = var.kms_key_name

  depends_on = [google_kms_crypto_key_iam_member.agents]
}

# Cloud Build publishes build notifications to the cloud-builds topic of the build's project only
# when that topic exists: on a fresh project nothing creates it.
resource "google_pubsub_topic" "deploys" {
  count        = local.create_deploy_topic ? 1 : 0
  project      = var.project_id
  name         = split("/", local.deploy_topic_id)[3]
  labels       = var.labels
  kms_key_name = var.kms_key_name

  lifecycle {
    precondition {
      condition     = local.deploy_topic_in_project
      error_message = "The module creates the deploy topic in project_id only: for a topic of another project set deploy_subscription.create_topic = false."
    }
  }

  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_monitoring_notification_channel" "signals" {
  count        = var.notification_channel.enabled ? 1 : 0
  project      = var.project_id
  display_name = coalesce(var.notification_channel.display_name, "${var.name_prefix} signals")
  description  = "Publishes alert incidents to redrive's signals topic; attach it to alert policies on the target queues."
  type         = "pubsub"
  user_labels  = var.labels
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
  user_labels  = merge(var.labels, { redrive = "attempt-failures" })

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

  # Messages published before handle_signal's trigger subscription exists are lost, and the
  # first deliveries need the invoker grant: the sink starts feeding the topic after both.
  depends_on = [
    google_cloudfunctions2_function.main,
    google_cloud_run_v2_service_iam_member.signal_invoker,
  ]
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
  topic                      = local.create_deploy_topic ? google_pubsub_topic.deploys[0].id : local.deploy_topic_id
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

  dynamic "dead_letter_policy" {
    for_each = var.dead_letter.enabled ? [local.dead_letter_topic_id] : []
    content {
      dead_letter_topic     = dead_letter_policy.value
      max_delivery_attempts = var.dead_letter.max_delivery_attempts
    }
  }

  depends_on = [google_cloud_run_v2_service_iam_member.signal_invoker]
}

# The patrol (parking): a scheduled message on the signals topic that makes handle_signal look at
# every allowed queue for tasks about to use their last attempt (task logs are sampled and arrive
# late; the patrol parks what they missed), then count the parked copies and check that the
# parking queue is paused. Cloud Scheduler publishes it as its service agent, whose own role
# (roles/cloudscheduler.serviceAgent, granted by Google when the API is enabled) holds
# pubsub.topics.publish in the project: the job must be in the topic's project, and needs no grant.
resource "google_cloud_scheduler_job" "patrol" {
  count       = var.parking.enabled ? 1 : 0
  project     = var.project_id
  region      = var.region
  name        = "${var.name_prefix}-patrol"
  description = "Publishes redrive's patrol to its signals topic: park the tasks about to use their last attempt, count the parked ones."
  schedule    = var.parking.patrol_schedule
  time_zone   = "Etc/UTC"

  pubsub_target {
    topic_name = local.topic_id
    data       = base64encode(jsonencode({ patrol = {} }))
  }

  # A patrol published before handle_signal's trigger subscription exists is lost: start after it.
  depends_on = [google_cloudfunctions2_function.main]
}

# ---------------------------------------------------------------------------------------------
# Dead letters of redrive's own signal subscriptions. Without a dead-letter topic, a signal that
# keeps failing is dropped when its retention ends (24 hours on Eventarc's subscription). A
# dead-letter topic without a subscription loses messages too, hence the pull subscription that
# keeps them for inspection and replay (publish them back to the signals topic). The Pub/Sub
# service agent forwards the messages: it publishes to this topic and acknowledges on the source
# subscription.

resource "google_pubsub_topic" "dead_letter" {
  count        = var.dead_letter.enabled ? 1 : 0
  project      = var.project_id
  name         = "${local.topic_name}-dead-letter"
  labels       = var.labels
  kms_key_name = var.kms_key_name

  depends_on = [google_kms_crypto_key_iam_member.agents]
}

resource "google_pubsub_subscription" "dead_letter" {
  count                      = var.dead_letter.enabled ? 1 : 0
  project                    = var.project_id
  name                       = "${local.topic_name}-dead-letter-hold"
  topic                      = google_pubsub_topic.dead_letter[0].id
  labels                     = var.labels
  ack_deadline_seconds       = 60
  message_retention_duration = "${var.dead_letter.retention_s}s"
  retain_acked_messages      = false

  expiration_policy {
    ttl = ""
  }
}

resource "google_pubsub_topic_iam_member" "dead_letter_publisher" {
  count   = var.dead_letter.enabled ? 1 : 0
  project = var.project_id
  topic   = google_pubsub_topic.dead_letter[0].id
  role    = "roles/pubsub.publisher"
  member  = local.agents.pubsub
}

resource "google_pubsub_subscription_iam_member" "deploys_dead_letter_subscriber" {
  count        = var.dead_letter.enabled && var.deploy_subscription.enabled ? 1 : 0
  project      = var.project_id
  subscription = google_pubsub_subscription.deploys[0].id
  role         = "roles/pubsub.subscriber"
  member       = local.agents.pubsub
}
