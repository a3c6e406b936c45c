output "signals_topic" {
  description = "The full id (projects/P/topics/T) of the topic that feeds handle_signal; publish signals or point other subscriptions' dead-letter policies here. Whoever may publish here can make redrive force-run failing tasks of the allowed queues: keep its publishers tight."
  value       = local.topic_id
}

output "signal_function" {
  description = "The handle_signal function: its name, full id and service URI."
  value = {
    name = google_cloudfunctions2_function.main.name
    id   = google_cloudfunctions2_function.main.id
    uri  = google_cloudfunctions2_function.main.service_config[0].uri
  }
}

output "job_function" {
  description = "The run_job function: its name, full id, service URI and the deterministic URL the redrive jobs call (REDRIVE_JOB_URL)."
  value = {
    name    = google_cloudfunctions2_function.job.name
    id      = google_cloudfunctions2_function.job.id
    uri     = google_cloudfunctions2_function.job.service_config[0].uri
    job_url = local.job_url
  }
}

output "redrive_queue" {
  description = "The full name (projects/P/locations/L/queues/Q) of the redrive queue; pause or purge it to pause or cancel a re-drive."
  value       = google_cloud_tasks_queue.main.id
}

output "service_account" {
  description = "The email of the service account both functions run as."
  value       = google_service_account.main.email
}

output "invoker_service_account" {
  description = "The email of the service account whose OIDC token the redrive queue sends to run_job."
  value       = google_service_account.invoker.email
}

output "notification_channel" {
  description = "The id of the pubsub notification channel to attach to alert policies on the target queues, or null when disabled."
  value       = one(google_monitoring_notification_channel.signals[*].id)
}

output "outcome_metric_type" {
  description = "The metric type of the outcome counter, or null when disabled."
  value       = var.outcome_metric.enabled ? local.outcome_metric_type : null
}

output "build_service_account" {
  description = "The email of the service account Cloud Build runs the functions' builds as."
  value       = local.build_account_email
}

output "artifact_repository" {
  description = "The id (projects/P/locations/L/repositories/R) of the Artifact Registry repository of the function images."
  value       = local.repository_id
}

output "deploy_topic" {
  description = "The full id of the topic the deploy subscription reads (created by the module with deploy_subscription.create_topic), or null when disabled."
  value       = var.deploy_subscription.enabled ? local.deploy_topic_id : null
}

output "dead_letter" {
  description = "The dead-letter topic of redrive's own signal subscriptions and the pull subscription that keeps what reaches it, or null when disabled."
  value = var.dead_letter.enabled ? {
    topic        = google_pubsub_topic.dead_letter[0].id
    subscription = google_pubsub_subscription.dead_letter[0].id
  } : null
}

output "trigger_dead_letter_commands" {
  description = "The gcloud commands that give handle_signal's Eventarc subscription (created by Eventarc, out of Terraform's reach) the same dead-letter policy and the Pub/Sub service agent the subscriber grant it needs, or null when dead_letter is disabled."
  value = var.dead_letter.enabled ? join("\n", [
    "SUB=$(gcloud eventarc triggers describe ${google_cloudfunctions2_function.main.event_trigger[0].trigger} --location=${var.region} --project=${var.project_id} --format='value(transport.pubsub.subscription)')",
    "gcloud pubsub subscriptions update \"$SUB\" --dead-letter-topic=${google_pubsub_topic.dead_letter[0].id} --max-delivery-attempts=${var.dead_letter.max_delivery_attempts}",
    "gcloud pubsub subscriptions add-iam-policy-binding \"$SUB\" --member=${local.agents.pubsub} --role=roles/pubsub.subscriber",
  ]) : null
}

output "dashboard" {
  description = "The id of the Cloud Monitoring dashboard, or null when disabled."
  value       = one(google_monitoring_dashboard.main[*].id)
}

output "alert_policies" {
  description = "The ids of the alert policies the module created, by name."
  value = { for name, policy in {
    attempt_failures   = google_monitoring_alert_policy.attempt_failures
    outcomes           = google_monitoring_alert_policy.outcomes
    signal_errors      = google_monitoring_alert_policy.signal_errors
    signal_backlog     = google_monitoring_alert_policy.signal_backlog
    job_failures       = google_monitoring_alert_policy.job_failures
    invalid_signals    = google_monitoring_alert_policy.invalid_signals
    dead_letters       = google_monitoring_alert_policy.dead_letters
    halted_redrives    = google_monitoring_alert_policy.halted_redrives
    parked             = google_monitoring_alert_policy.parked
    parked_expiring    = google_monitoring_alert_policy.parked_expiring
    parking_not_paused = google_monitoring_alert_policy.parking_not_paused
  } : name => policy[0].name if length(policy) > 0 }
}

output "claims_queue" {
  description = "Full name of the claims queue (REDRIVE_CLAIMS_QUEUE): one write-once marker per forced run of a failure, and per task and fix."
  value       = google_cloud_tasks_queue.feature["claims"].id
}

output "claims_queue_pause_command" {
  description = "The command that pauses the claims queue once after the first apply (the provider cannot set a queue's state; its markers never run either way)."
  value       = "gcloud tasks queues pause ${google_cloud_tasks_queue.feature["claims"].name} --location=${var.region} --project=${var.project_id}"
}

output "parking_queue" {
  description = "Full name of the parking queue (REDRIVE_PARKING_QUEUE): the parked copies of tasks that were about to use their last attempt, or null when parking is off."
  value       = var.parking.enabled ? google_cloud_tasks_queue.feature["parking"].id : null
}

output "parking_queue_pause_command" {
  description = "The command that pauses the parking queue once after the first apply (the provider cannot set a queue's state; the patrol logs ERROR while it is not PAUSED), or null when parking is off."
  value       = var.parking.enabled ? "gcloud tasks queues pause ${google_cloud_tasks_queue.feature["parking"].name} --location=${var.region} --project=${var.project_id}" : null
}

output "patrol_job" {
  description = "The id of the Cloud Scheduler job that publishes the patrol (gcloud scheduler jobs run starts one now), or null when parking is off."
  value       = one(google_cloud_scheduler_job.patrol[*].id)
}

output "parking_metric_types" {
  description = "The metric types of the patrol's census (parked: the parked copies; parked_expiring: those within parking.warn_s of the retention limit), or an empty map when parking is off."
  value       = local.parking_metric_types
}
