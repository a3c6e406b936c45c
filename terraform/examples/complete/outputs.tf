output "signals_topic" {
  description = "The topic that feeds redrive; publish a test signal here."
  value       = module.redrive.signals_topic
}

output "redrive_queue" {
  description = "The redrive queue; pause it to pause every re-drive."
  value       = module.redrive.redrive_queue
}

output "signal_function" {
  description = "The handle_signal function."
  value       = module.redrive.signal_function
}

output "job_function" {
  description = "The run_job function."
  value       = module.redrive.job_function
}

output "service_account" {
  description = "The service account redrive runs as."
  value       = module.redrive.service_account
}

output "target_queue" {
  description = "The example target queue."
  value       = google_cloud_tasks_queue.billing.id
}

output "dashboard" {
  description = "The redrive dashboard."
  value       = module.redrive.dashboard
}

output "trigger_dead_letter_commands" {
  description = "Run these once after the first apply: they give handle_signal's Eventarc subscription the module's dead-letter policy."
  value       = module.redrive.trigger_dead_letter_commands
}

output "claims_queue_pause_command" {
  description = "Run this once after the first apply: it pauses the claims queue (the provider cannot set a queue's state)."
  value       = module.redrive.claims_queue_pause_command
}

output "parking_queue_pause_command" {
  description = "Run this once after the first apply: it pauses the parking queue, where parked tasks wait for their fix (the patrol logs ERROR and alerts until it is paused)."
  value       = module.redrive.parking_queue_pause_command
}
