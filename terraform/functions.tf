# The two entry points of main.py, deployed from the same source archive under one service account.

locals {
  # Environment shared by both functions. Every key is a variable redrive.config reads (the
  # tests check this against ENV_VARS); null values are dropped where the map is used.
  env_common = {
    REDRIVE_ALLOWED_QUEUES     = join(",", var.target_queues)
    REDRIVE_TASKS_API          = var.settings.tasks_api
    REDRIVE_RESPONSE_VIEW      = var.settings.response_view
    REDRIVE_FIX_CHECK          = var.settings.fix_check
    REDRIVE_FIX_DEPLOYED_AT    = var.settings.fix_check == "static" ? var.settings.fix_deployed_at : null
    REDRIVE_SERVICE_MAP        = length(var.service_map) > 0 ? jsonencode(var.service_map) : null
    REDRIVE_MAX_SIGNAL_AGE     = "${var.settings.max_signal_age_s}s"
    REDRIVE_RETRY_DEADLINE_S   = tostring(var.settings.retry_deadline_s)
    REDRIVE_DRY_RUN            = tostring(var.settings.dry_run)
    REDRIVE_CLAIMS_QUEUE       = google_cloud_tasks_queue.feature["claims"].id
    REDRIVE_RETRY_DUE_MARGIN_S = tostring(var.settings.retry_due_margin_s)
    REDRIVE_CLOCK_SKEW_S       = tostring(var.settings.clock_skew_s)
    REDRIVE_RPC_TIMEOUT_S      = tostring(var.settings.rpc_timeout_s)
    REDRIVE_PERMISSION_GRACE_S = tostring(var.settings.permission_grace_s)
    # Without re-create's grants every re-drive uses RunTask.
    REDRIVE_METHOD        = var.recreate.enabled ? var.recreate.method : "run"
    REDRIVE_QUEUE_METHODS = var.recreate.enabled && length(var.recreate.queue_methods) > 0 ? jsonencode(var.recreate.queue_methods) : null
    # Parking, on both functions: handle_signal parks from failure signals and the patrol and
    # restores after a deploy; run_job parks a task its job finds without a live fix.
    REDRIVE_PARKING_QUEUE        = var.parking.enabled ? google_cloud_tasks_queue.feature["parking"].id : null
    REDRIVE_PARK_MARGIN_S        = var.parking.enabled ? tostring(var.parking.margin_s) : null
    REDRIVE_PARK_BEFORE_EXPIRY_S = var.parking.enabled ? tostring(var.parking.before_expiry_s) : null
    REDRIVE_PARKED_WARN_S        = var.parking.enabled ? tostring(var.parking.warn_s) : null
    # Canaries of bulk re-drives: handle_signal's sweeps, run_job's gate jobs.
    REDRIVE_CANARIES         = tostring(var.canaries.tasks)
    REDRIVE_CANARY_FAILURES  = tostring(var.canaries.failures)
    REDRIVE_CANARY_TIMEOUT_S = tostring(var.canaries.timeout_s)
    # functions-framework's own switch: adds the execution id to every structured log line.
    LOG_EXECUTION_ID = "true"
  }

  # Queued mode, on both functions: handle_signal enqueues one job per failure into the redrive
  # queue, which calls run_job with an OIDC token of the invoker account; run_job refuses jobs
  # when REDRIVE_QUEUE is unset. The job URL is Cloud Run's deterministic service URL
  # (NAME-PROJECT_NUMBER.REGION.run.app), known before the function exists, so run_job's own
  # settings need no self-reference.
  job_url = "https://${local.job_function_name}-${data.google_project.main.number}.${var.region}.run.app"
  env_queued = {
    REDRIVE_QUEUE               = google_cloud_tasks_queue.main.id
    REDRIVE_JOB_URL             = local.job_url
    REDRIVE_JOB_SERVICE_ACCOUNT = google_service_account.invoker.email
    # Cloud Tasks waits this long for run_job's answer: its timeout, not the 10-minute default.
    REDRIVE_JOB_DEADLINE_S = tostring(var.job_function.timeout_s)
  }

  env_signal = merge(local.env_common, local.env_queued, {
    REDRIVE_SWEEP_BUDGET_S = tostring(var.signal_function.sweep_budget_s)
  })
  env_job = merge(local.env_common, local.env_queued)
}

resource "google_cloudfunctions2_function" "job" {
  project      = var.project_id
  name         = local.job_function_name
  location     = var.region
  description  = "redrive run_job: guards, fix check and RunTask for one failed task; called by the redrive queue."
  labels       = var.labels
  kms_key_name = var.kms_key_name

  build_config {
    runtime           = var.runtime
    entry_point       = "run_job"
    service_account   = "projects/${var.project_id}/serviceAccounts/${local.build_account_email}"
    docker_repository = local.repository_id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.main.email
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    timeout_seconds                  = var.job_function.timeout_s
    available_memory                 = var.job_function.available_memory
    available_cpu                    = var.job_function.available_cpu
    min_instance_count               = var.job_function.min_instance_count
    max_instance_count               = var.job_function.max_instance_count
    max_instance_request_concurrency = var.job_function.max_instance_request_concurrency
    vpc_connector                    = var.vpc_access.connector
    vpc_connector_egress_settings    = var.vpc_access.connector == null ? null : var.vpc_access.egress
    environment_variables            = { for k, v in local.env_job : k => v if v != null }
  }

  # Signals must not be lost while grants propagate: the function starts taking jobs only once
  # every grant it, its build and its trigger need exists and has had time to propagate.
  depends_on = [time_sleep.grants]
}

# Pub/Sub trigger with retries on: a transient FAILED raises and Eventarc delivers the event again;
# permanent outcomes return normally and are acknowledged. Ingress is internal (Eventarc and
# Pub/Sub push count as internal).
resource "google_cloudfunctions2_function" "main" {
  project      = var.project_id
  name         = local.signal_function_name
  location     = var.region
  description  = "redrive handle_signal: turns alert, task-log, dead-letter and deploy signals into redrive jobs."
  labels       = var.labels
  kms_key_name = var.kms_key_name

  build_config {
    runtime           = var.runtime
    entry_point       = "handle_signal"
    service_account   = "projects/${var.project_id}/serviceAccounts/${local.build_account_email}"
    docker_repository = local.repository_id
    source {
      storage_source {
        bucket = google_storage_bucket.source.name
        object = google_storage_bucket_object.source.name
      }
    }
  }

  service_config {
    service_account_email            = google_service_account.main.email
    ingress_settings                 = "ALLOW_INTERNAL_ONLY"
    all_traffic_on_latest_revision   = true
    timeout_seconds                  = var.signal_function.timeout_s
    available_memory                 = var.signal_function.available_memory
    available_cpu                    = var.signal_function.available_cpu
    min_instance_count               = var.signal_function.min_instance_count
    max_instance_count               = var.signal_function.max_instance_count
    max_instance_request_concurrency = var.signal_function.max_instance_request_concurrency
    vpc_connector                    = var.vpc_access.connector
    vpc_connector_egress_settings    = var.vpc_access.connector == null ? null : var.vpc_access.egress
    environment_variables            = { for k, v in local.env_signal : k => v if v != null }
  }

  event_trigger {
    trigger_region        = var.region
    event_type            = "google.cloud.pubsub.topic.v1.messagePublished"
    pubsub_topic          = local.topic_id
    retry_policy          = "RETRY_POLICY_RETRY"
    service_account_email = google_service_account.main.email
  }

  depends_on = [time_sleep.grants]
}
