output "signals_topic" {
  description = "The full id (projects/P/topics/T) of the topic that feeds handle_signal; publish signals or point dead-letter policies here."
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
  value       = var.outcome_metric.enabled ? "logging.googleapis.com/user/${local.outcome_metric_name}" : null
}
